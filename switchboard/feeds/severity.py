"""Every feed's own severity words, read as one vocabulary: minor, major, critical.

Rules match `severity` on this vocabulary (a rule may still name the feed's
own word: `native_severity` keeps it), and a declared incident takes it
instead of the runbook's default. docs/operations.md shows the same table.
"""

from __future__ import annotations

from typing import Final

SEVERITIES: Final = ("minor", "major", "critical")

# Per kind: native value (lower case) -> normalised. A value missing here
# gives no severity at all, so the runbook's default applies.
TABLES: Final[dict[str, dict[str, str]]] = {
    "alertmanager": {"info": "minor", "informational": "minor", "low": "minor",
                     "warning": "minor", "warn": "minor", "minor": "minor",
                     "error": "major", "major": "major", "high": "major",
                     "critical": "critical", "page": "critical", "fatal": "critical",
                     "emergency": "critical"},
    # urgency, overridden by priority when the account uses priorities
    "pagerduty": {"low": "minor", "high": "major",
                  "p1": "critical", "p2": "major", "p3": "minor", "p4": "minor", "p5": "minor"},
    "cap": {"minor": "minor", "moderate": "minor", "severe": "major", "extreme": "critical"},
    "statuspage": {"none": "minor", "maintenance": "minor", "minor": "minor",
                   "major": "major", "critical": "critical"},
    "siri-sx": {"noimpact": "minor", "veryslight": "minor", "slight": "minor",
                "normal": "major", "severe": "major", "verysevere": "critical"},
    "gtfs-rt": {"info": "minor", "warning": "major", "severe": "critical"},
}
TABLES["json"] = TABLES["alertmanager"]
TABLES["atom"] = TABLES["rss"] = TABLES["statuspage"]


def normalise(kind: str, native: str | None) -> str | None:
    """The vocabulary word for a feed's own severity value, or None."""
    if not native:
        return None
    return TABLES.get(kind, {}).get(native.strip().lower())


def with_severity(kind: str, labels: dict[str, str], native: str | None) -> dict[str, str]:
    """`labels` with `severity` normalised and the feed's own word as `native_severity`.

    A value outside the table stays as `severity` (a rule may name it), and
    then the incident keeps the runbook's default.
    """
    out = {name: value for name, value in labels.items() if name != "severity"}
    if not native:
        return out
    out["native_severity"] = native
    out["severity"] = normalise(kind, native) or native
    return out
