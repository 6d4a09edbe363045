"""Team members, their schedules in their own time zones, and the assignment policy."""
