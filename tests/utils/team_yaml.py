"""A small team file for the CLI tests (``heliograph import-team``)."""

from __future__ import annotations

import textwrap

TEAM = textwrap.dedent(
    """
    members:
      - name: Aisyah Rahman
        email: aisyah@team.example
        timezone: Asia/Kuala_Lumpur
      - name: Tom Baker
        email: tom@team.example
        role: lead
        timezone: Europe/London
    """
)
