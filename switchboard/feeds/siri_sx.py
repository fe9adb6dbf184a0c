"""SIRI-SX situation exchange (public transport disruptions), polled.

One signal per `PtSituationElement`, keyed by its `SituationNumber`.
`Progress` closing/closed, or every `ValidityPeriod` over, resolves;
unpublished situations (draft, pendingApproval, approvedDraft) and open ones
whose validity has not begun are left out. Labels: line_ref and
stop_point_ref (several joined with ","), all_lines ("true"), progress,
severity, reason (the reason element, e.g. UnknownReason or the value of
MiscellaneousReason; SIRI 2.1's AlertCause first), participant. `severity`
is normalised (slight minor, normal and severe major, verySevere critical)
and the SIRI word kept as `native_severity`. The title, description and
advice are in the feed's `language` (default `en`; an element without
xml:lang counts as the delivery's own language), else English, else the
first given.

SIRI producers often write local times without an offset; those are read in
the offset of the delivery's own ResponseTimestamp, else as UTC.

Not yet a configurable kind: config.FEED_KINDS needs "siri-sx" first.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, tzinfo
from xml.etree.ElementTree import Element

from switchboard.feeds import safexml
from switchboard.feeds.parser import FeedParser, current_time
from switchboard.feeds.payload import MAX_LABEL_CHARS, malformed, parse_time
from switchboard.feeds.safexml import local_name, namespace
from switchboard.feeds.severity import with_severity
from switchboard.feeds.signal import Signal
from switchboard.feeds.translations import choose

KIND = "siri-sx"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
# Some producers leave SIRI unqualified.
SIRI_NAMESPACES = frozenset({"http://www.siri.org.uk/siri", ""})
RESOLVED_PROGRESS = frozenset({"closing", "closed"})
UNPUBLISHED_PROGRESS = frozenset({"draft", "pendingapproval", "approveddraft"})


class SiriSxParser(FeedParser):
    kind = KIND
    accept = "application/xml, text/xml;q=0.9, */*;q=0.1"

    def parse(self, body: bytes, headers: Mapping[str, str],
              now: datetime | None = None) -> list[Signal]:
        root = safexml.parse(KIND, body, forbid_dtd=True)
        if local_name(root.tag) != "Siri":
            raise malformed(KIND, f"expected a SIRI <Siri> document, not <{local_name(root.tag)}>")
        stamp = parse_time(_text(next(_named(root, "ResponseTimestamp"), None)))
        zone = stamp.tzinfo if stamp is not None else None
        when = current_time(now)
        signals = (self._signal(element, zone, when)
                   for element in _named(root, "PtSituationElement"))
        return [signal for signal in signals if signal is not None]

    def _signal(self, situation: Element, zone: tzinfo | None, now: datetime) -> Signal | None:
        key = _child_text(situation, "SituationNumber")
        if not key:
            raise malformed(KIND, "a PtSituationElement has no SituationNumber")
        progress = _child_text(situation, "Progress")
        if progress.lower() in UNPUBLISHED_PROGRESS:
            return None
        closed = progress.lower() in RESOLVED_PROGRESS
        state = "ended" if closed else _validity(situation, zone, now)
        if state == "pending":
            return None
        resolved = state == "ended"
        labels = {
            "line_ref": _joined(situation, "LineRef"),
            "stop_point_ref": _joined(situation, "StopPointRef"),
            "all_lines": "true" if next(_named(situation, "AllLines"), None) is not None else "",
            "progress": progress,
            "reason": _reason(situation), "participant": _child_text(situation, "ParticipantRef"),
        }
        labels = with_severity(KIND, {name: value for name, value in labels.items() if value},
                               _child_text(situation, "Severity"))
        language = self.config.language
        notes = {"description": _translated(situation, "Description", language),
                 "advice": _translated(situation, "Advice", language)}
        created = _child_text(situation, "VersionedAtTime") or \
            _child_text(situation, "CreationTime")
        return Signal(
            source=self.config.id, key=key, status="resolved" if resolved else "firing",
            title=_translated(situation, "Summary", language) or notes["description"] or key,
            at=_time(created, zone) or now,
            labels=labels,
            annotations={name: value for name, value in notes.items() if value})


def _validity(situation: Element, zone: tzinfo | None, now: datetime) -> str:
    """"active", "ended" (every period over) or "pending" (none begun)."""
    periods = [(_time(_child_text(p, "StartTime"), zone), _time(_child_text(p, "EndTime"), zone))
               for p in situation if _is(p, "ValidityPeriod")]
    if not periods or any((start is None or start <= now) and (end is None or now < end)
                          for start, end in periods):
        return "active"
    if all(end is not None and end <= now for _, end in periods):
        return "ended"
    return "pending"


def _time(text: str, zone: tzinfo | None) -> datetime | None:
    return parse_time(text, assume=zone or UTC)


def _reason(situation: Element) -> str:
    """SIRI 2.1's AlertCause, else a 1.x reason element (`<MiscellaneousReason>`...)."""
    cause = _child_text(situation, "AlertCause")
    if cause:
        return cause
    for child in situation:
        name = local_name(child.tag)
        if name.endswith("Reason") and _is(child, name):
            return _text(child) or name
    return ""


def _translated(situation: Element, name: str, language: str) -> str:
    texts = [child for child in situation if _is(child, name)]
    # `choose` tests `is None`, never truthiness: an element without children is falsy.
    return _text(choose(texts, lambda text: text.get(XML_LANG, language), language))


def _named(parent: Element, name: str) -> Iterator[Element]:
    return (element for element in parent.iter() if _is(element, name))


def _child_text(parent: Element, name: str) -> str:
    return _text(next((c for c in parent if _is(c, name)), None))


def _is(element: Element, name: str) -> bool:
    """A SIRI element of that name; a producer's own extension elements (other
    namespaces) are not read as SIRI, whatever they are called."""
    return local_name(element.tag) == name and namespace(element.tag) in SIRI_NAMESPACES


def _joined(parent: Element, name: str) -> str:
    values = dict.fromkeys(text for element in _named(parent, name) if (text := _text(element)))
    return ",".join(values)[:MAX_LABEL_CHARS]


def _text(element: Element | None) -> str:
    if element is None or element.text is None:
        return ""
    return " ".join(element.text.split())[:MAX_LABEL_CHARS]
