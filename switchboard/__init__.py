"""switchboard: scheduled marketing posts that step aside when an incident is declared."""

__version__ = "0.1.0"
