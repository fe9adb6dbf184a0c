"""Incidents: declare, hand over, update, resolve, void, and give the channels back.

`Incidents` (lifecycle.py) is built from its parts: core (shared state,
timers, metrics), cooldown (held posts and the end of a cooldown), void
(false alarms). `FeedSignals` (signals.py) turns feeds' signals into
incident operations; views.py renders incidents for people and programs.
"""

from switchboard.incidents.lifecycle import Incidents
from switchboard.incidents.signals import REPEAT_LOG_INTERVAL, FeedSignals
from switchboard.incidents.views import (
    REVIEW_COMMAND,
    group_key,
    incident_json,
    parse_incident_id,
    review_notice,
    signal_json,
    signal_key,
    void_notice,
)
from switchboard.incidents.void import Voided

__all__ = ["REPEAT_LOG_INTERVAL", "REVIEW_COMMAND", "FeedSignals", "Incidents", "Voided",
           "group_key", "incident_json", "parse_incident_id", "review_notice", "signal_json",
           "signal_key", "void_notice"]
