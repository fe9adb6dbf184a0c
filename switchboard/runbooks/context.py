"""What the core reads from the live configuration; a reload swaps it whole."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from switchboard.config.model import ChannelConfig
from switchboard.runbooks.model import Runbook


@dataclass(frozen=True)
class RunContext:
    """The runbooks, the channels' configs and the zone people read times in."""

    runbooks: Mapping[str, Runbook]
    channels: Mapping[str, ChannelConfig]
    timezone: ZoneInfo
