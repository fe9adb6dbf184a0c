"""CAP 1.x alerts (OASIS Common Alerting Protocol), polled.

The body is either one CAP `<alert>` or an Atom index of alerts whose
entries carry `cap:` fields (the US National Weather Service's
alerts.atom) or embed whole `<alert>`s.

- key: the alert's `identifier`; for Update, Cancel and Error messages, the
  first identifier in `references`, so an update keeps to the same incident.
- resolved: `msgType` Cancel or Error, `responseType` AllClear, `urgency`
  Past ("the signal was cancelled"), or `expires` already past. These clear
  the referenced alert and never declare.
- pending: an alert whose `onset` (else `effective`) lies further ahead than
  the feed's largest rule `lead:` is left out until then, so a warning for
  tomorrow's flood does not suspend marketing today.
- `<info>`: the block in the feed's `language` (default `en`, matching en-US,
  en-CA...), else the English one, else the first.
- ignored: `status` Test, Draft and System (the spec says to disregard them)
  and `msgType` Ack; Exercise is kept, labelled, so a rule can choose it.
- labels: severity, urgency, certainty, event, category, areaDesc,
  senderName, sender, msgType, identifier, responseType, `cap_status` (not
  `status`, which rules already see as firing/resolved) and `cap_scope`.
  `severity` is normalised (Minor/Moderate minor, Severe major, Extreme
  critical); the CAP word is `native_severity`. A `cap_scope` other than
  Public is matched only by a rule that names `cap_scope` in its match.

XML-DSig signatures (IPAWS signs its messages) are not verified.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from xml.etree.ElementTree import Element

from switchboard.feeds import safexml
from switchboard.feeds.parser import FeedParser, current_time
from switchboard.feeds.payload import MAX_LABEL_CHARS, malformed, parse_time
from switchboard.feeds.safexml import local_name, namespace
from switchboard.feeds.severity import with_severity
from switchboard.feeds.signal import Signal
from switchboard.feeds.translations import choose

KIND = "cap"
CAP_NAMESPACE_PREFIX = "urn:oasis:names:tc:emergency:cap:"
ATOM = "{http://www.w3.org/2005/Atom}"

LABELS = ("severity", "urgency", "certainty", "event", "category", "areaDesc", "senderName",
          "sender", "msgType", "identifier", "responseType")
NOTES = ("headline", "description", "instruction", "web", "references", "note", "summary",
         "link")
ACTIONABLE_STATUSES = ("Actual", "Exercise")
RESOLVING_TYPES = ("Cancel", "Error")
# Repeated elements are joined: areas name places and carry commas themselves.
JOINERS = {"areaDesc": "; ", "category": ","}

Fields = dict[str, str]


class CapParser(FeedParser):
    kind = KIND
    accept = "application/cap+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.1"

    def parse(self, body: bytes, headers: Mapping[str, str],
              now: datetime | None = None) -> list[Signal]:
        root = safexml.parse(KIND, body, forbid_dtd=True)
        when = current_time(now)
        language = self.config.language
        if _is_cap(root) and local_name(root.tag) == "alert":
            messages = [_alert_fields(root, language)]
        elif root.tag == f"{ATOM}feed":
            messages = [_entry_fields(entry, language)
                        for entry in root.findall(f"{ATOM}entry")]
        else:
            raise malformed(KIND, f"expected a CAP <alert> or an Atom <feed>, "
                                  f"not <{local_name(root.tag)}>")
        signals = (self._signal(fields, when) for fields in messages if _actionable(fields))
        return [signal for signal in signals if signal is not None]

    def _signal(self, fields: Fields, now: datetime) -> Signal | None:
        key = _key(fields)
        expires = parse_time(fields.get("expires"))
        resolved = _clears(fields) or (expires is not None and expires <= now)
        starts = parse_time(fields.get("onset")) or parse_time(fields.get("effective"))
        if not resolved and starts is not None and starts - self._lead() > now:
            return None  # pending: reported once it is due
        labels = {name: fields[name] for name in LABELS if fields.get(name)}
        labels = with_severity(KIND, labels, labels.get("severity"))
        if fields.get("status"):
            labels["cap_status"] = fields["status"]
        if fields.get("scope"):
            labels["cap_scope"] = fields["scope"]
        return Signal(
            source=self.config.id, key=key, status="resolved" if resolved else "firing",
            title=fields.get("headline") or fields.get("title") or fields.get("event") or key,
            at=parse_time(fields.get("sent")) or parse_time(fields.get("updated")) or now,
            labels=labels,
            annotations={name: fields[name] for name in NOTES if fields.get(name)},
            expires_at=expires)


    def _lead(self) -> timedelta:
        return max((rule.lead for rule in self.config.rules), default=timedelta(0))


def _clears(fields: Fields) -> bool:
    """Cancel/Error, or an all-clear: the hazard is over, whatever msgType says."""
    responses = {part.strip() for part in fields.get("responseType", "").split(",")}
    return (fields.get("msgType") in RESOLVING_TYPES or "AllClear" in responses
            or fields.get("urgency") == "Past")


def _is_cap(element: Element) -> bool:
    return namespace(element.tag).startswith(CAP_NAMESPACE_PREFIX)


def _actionable(fields: Fields) -> bool:
    return (fields.get("status", "Actual") in ACTIONABLE_STATUSES
            and fields.get("msgType") != "Ack")


def _key(fields: Fields) -> str:
    if fields.get("msgType") in ("Update", *RESOLVING_TYPES):
        # references: whitespace-separated "sender,identifier,sent" triples
        for reference in fields.get("references", "").split():
            parts = reference.split(",")
            if len(parts) >= 3 and parts[1]:
                return parts[1]
    key = fields.get("identifier") or fields.get("id")
    if not key:
        raise malformed(KIND, "an alert has no identifier")
    return key


def _alert_fields(alert: Element, language: str) -> Fields:
    # Only the alert's own namespace: XML-DSig and producers' extensions are not CAP.
    own = namespace(alert.tag)
    fields = _children(_same(alert, own))
    info = _pick_info([child for child in _same(alert, own) if local_name(child.tag) == "info"],
                      language, own)
    if info is not None:
        fields.update(_children(_same(info, own)))
        areas = [child for child in _same(info, own) if local_name(child.tag) == "area"]
        if areas:
            fields["areaDesc"] = "; ".join(
                text for area in areas
                for text in [_children(_same(area, own)).get("areaDesc")] if text)
    return fields


def _same(parent: Element, own: str) -> list[Element]:
    return [child for child in parent if namespace(child.tag) == own]


def _pick_info(infos: list[Element], language: str, own: str) -> Element | None:
    """The block in `language` where there are several, else the English one, else
    the first (a block without <language> is en-US, CAP's default)."""
    return choose(infos, lambda info: _children(_same(info, own)).get("language") or "en-US",
                  language)


def _entry_fields(entry: Element, language: str) -> Fields:
    embedded = next((el for el in entry.iter() if _is_cap(el) and local_name(el.tag) == "alert"),
                    None)
    fields = _alert_fields(embedded, language) if embedded is not None else {}
    fields = {**_children(child for child in entry if _is_cap(child)), **fields}
    for name in ("id", "title", "summary", "updated"):
        text = _text(entry.find(f"{ATOM}{name}"))
        if text:
            fields.setdefault(name, text)
    link = entry.find(f"{ATOM}link")
    if link is not None and link.get("href"):
        fields.setdefault("link", link.get("href", ""))
    return fields


def _children(elements: Iterable[Element]) -> Fields:
    """Text of simple elements by local name, repeats joined."""
    out: Fields = {}
    for child in elements:
        name, text = local_name(child.tag), _text(child)
        if not name or not text:
            continue
        out[name] = f"{out[name]}{JOINERS.get(name, ', ')}{text}" if name in out else text
    return out


def _text(element: Element | None) -> str:
    if element is None or element.text is None:
        return ""
    return " ".join(element.text.split())[:MAX_LABEL_CHARS]
