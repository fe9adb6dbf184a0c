"""What one feed is configured to be: its kind, where it is read and its rules.

These are the feed's own settings, kept under `feeds/` so the parsers need not
import the whole configuration loader (`config.py` builds them and re-exports
them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

# Signal fields a rule must name in its match to see a signal at all: CAP
# alerts scoped Restricted or Private are not for the public channels.
_OPT_IN_SCOPE = "cap_scope"


@dataclass(frozen=True)
class Matcher:
    """Matches one signal field: an exact value, any of a list, or a regex."""

    values: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = None

    def matches(self, value: str | None) -> bool:
        if value is None:
            return False
        if self.pattern is not None:
            return self.pattern.fullmatch(value) is not None
        return value in self.values


@dataclass(frozen=True)
class Rule:
    match: dict[str, Matcher]
    runbook: str
    channels: tuple[str, ...] | None = None
    title: str | None = None
    severity: str | None = None
    # One incident per Alertmanager group ("group") or per alert ("alert").
    per: str = "group"
    # How long before a CAP alert's onset the rule may act.
    lead: timedelta = timedelta(0)
    # Scheduled maintenance on a status page declares only where this is set.
    maintenance: bool = False

    def matches(self, fields: dict[str, str]) -> bool:
        if fields.get("maintenance") == "true" and not self.maintenance:
            return False
        if fields.get(_OPT_IN_SCOPE, "Public") != "Public" and _OPT_IN_SCOPE not in self.match:
            return False
        return all(self._field_matches(name, m, fields) for name, m in self.match.items())

    @staticmethod
    def _field_matches(name: str, matcher: Matcher, fields: dict[str, str]) -> bool:
        # `severity` is the normalised word; the feed's own word matches too,
        # so `severity: [Severe, Extreme]` on a CAP feed keeps working.
        if name == "severity" and matcher.matches(fields.get("native_severity")):
            return True
        return matcher.matches(fields.get(name))


@dataclass(frozen=True)
class FeedConfig:
    id: str
    kind: str
    rules: tuple[Rule, ...] = ()
    url: str | None = None
    every: timedelta = timedelta(seconds=60)
    timeout: float = 10.0
    token_sha256: str | None = None
    secret: str | None = field(default=None, repr=False)
    fields: dict[str, Any] = field(default_factory=dict)
    signature_header: str | None = None
    # Which translation CAP, SIRI-SX and GTFS-rt texts are read in.
    language: str = "en"
