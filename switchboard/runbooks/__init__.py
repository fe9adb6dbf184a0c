"""Runbooks (design §3.4): what happens to the channels during an incident.

A runbook is `runbooks/<name>.yaml`. Loading validates everything an operator
can get wrong (keys, durations, channels, actions, templates and whether the
rendered text fits the target channels), reports every problem across every
file as `FILE:LINE:COL: key: message`, and returns frozen `Runbook` objects the
engine can trust without further checks.

Channel knowledge comes in as a parameter (`ChannelInfo` by id, see
`channel_infos`) so this package does not depend on the channel implementations.

The parts: `model` (what a runbook is), `reader` (loading files), `sections`
and `steps` (the reader's checks), `sample` (test renders at load).
"""

from switchboard.config import SEVERITIES
from switchboard.runbooks.model import (
    ACTIONS,
    HELD_POLICIES,
    RESOLVE_ACTIONS,
    SAMPLE_DECLARED_AT,
    ChannelInfo,
    Handover,
    ResolvePolicy,
    Runbook,
    Step,
    channel_infos,
)
from switchboard.runbooks.reader import check_runbooks, load_runbook, load_runbooks, read_runbooks

__all__ = ["ACTIONS", "HELD_POLICIES", "RESOLVE_ACTIONS", "SAMPLE_DECLARED_AT", "SEVERITIES",
           "ChannelInfo", "Handover", "ResolvePolicy", "Runbook", "Step", "channel_infos",
           "check_runbooks", "load_runbook", "load_runbooks", "read_runbooks"]
