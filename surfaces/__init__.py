"""The chat surfaces for agents, team leads and the CEO (Slack, Telegram)."""
