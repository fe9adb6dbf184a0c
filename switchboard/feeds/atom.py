"""Atom and RSS feeds (kinds `atom` and `rss`), e.g. a Statuspage `history.atom`.

Each entry is one signal keyed by its id (else its link). Statuspage writes
an incident's steps newest first as `<strong>Resolved</strong> - ...` in the
entry's HTML, so the first such word is the incident's state: Resolved,
Completed or Postmortem resolve it; anything else (or a plain news entry
with no state at all) is firing while the entry is in the feed. Rules match
on the title and the labels: `link`, `feed` (the feed's title),
`incident_status` (the state word, lower case), `categories` and `content`
(the entry's text without markup).

Scheduled maintenance (a Statuspage maintenance's states are Scheduled, In
progress, Verifying, Completed; a future one says "THIS IS A SCHEDULED
EVENT") is labelled `maintenance: "true"` with severity minor: no rule
declares it unless the rule says `maintenance: true`. Incident entries carry
no impact in these feeds, so they have no severity and the runbook's
default applies.

feedparser is lenient, which a poller needs (real feeds are sloppy), but it
must not be the first to see hostile input: the body is pre-parsed with
defusedxml, which refuses entity declarations and external entities, and
a document cut off mid-way is refused rather than read as "fewer entries",
since a missing entry would resolve its incident.
"""

from __future__ import annotations

import calendar
import html
import io
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import feedparser

from switchboard.feeds import safexml
from switchboard.feeds.auth import header
from switchboard.feeds.parser import FeedParser, current_time
from switchboard.feeds.payload import MAX_LABEL_CHARS, malformed
from switchboard.feeds.signal import Signal

RESOLVED_STATES = frozenset({"resolved", "completed", "postmortem"})
MAINTENANCE_STATES = frozenset({"scheduled", "in progress", "verifying", "completed"})
_SCHEDULED_EVENT = re.compile(r"<strong>\s*THIS IS A SCHEDULED EVENT", re.IGNORECASE)
_STATE_IN_HTML = re.compile(r"<strong>\s*([A-Za-z][A-Za-z ]{0,30}?)\s*</strong>")
_STATE_IN_TITLE = re.compile(r"^\s*\[?\s*(resolved|completed)\s*[\]:-]", re.IGNORECASE)
_TAG = re.compile(r"<[^>]*>")
# For bodies expat could not read, so defusedxml never saw their DTD: any
# entity declaration, in any encoding feedparser would accept, is refused.
_ENTITY_MARKERS = tuple(marker.encode(encoding)
                        for encoding in ("utf-8", "utf-16-le", "utf-16-be", "utf-32-le",
                                         "utf-32-be")
                        for marker in ("<!ENTITY", "<!entity"))


class AtomParser(FeedParser):
    kind = "atom"
    accept = "application/atom+xml, application/rss+xml, application/xml;q=0.9, */*;q=0.1"

    def parse(self, body: bytes, headers: Mapping[str, str],
              now: datetime | None = None) -> list[Signal]:
        parsed = self._feedparser(body, headers)
        feed_title = _text(str(parsed.feed.get("title") or ""))
        when = current_time(now)
        signals = (self._signal(entry, feed_title, when) for entry in parsed.entries)
        return [signal for signal in signals if signal is not None]

    def _feedparser(self, body: bytes, headers: Mapping[str, str]) -> Any:
        try:
            safexml.strict_parse(self.kind, body, forbid_dtd=False)
        except safexml.NotWellFormed as exc:
            if exc.truncated:
                raise malformed(self.kind, f"document cut off ({exc})") from None
            if any(marker in body for marker in _ENTITY_MARKERS):
                raise malformed(self.kind, "refused XML with an entity declaration") from None
        content_type = header(headers, "Content-Type")
        try:
            # A stream, never bytes: given bytes, feedparser tries them as a file name.
            parsed = feedparser.parse(
                io.BytesIO(body),
                response_headers={"content-type": content_type} if content_type else None)
        except Exception as exc:  # third-party lenient parser: any crash is bad input
            raise malformed(self.kind, f"unreadable feed ({type(exc).__name__})") from None
        if not parsed.get("version"):
            raise malformed(self.kind, "not an RSS or Atom feed")
        if parsed.get("bozo") and not parsed.entries:
            raise malformed(self.kind, f"broken feed: {parsed.get('bozo_exception')}")
        return parsed

    def _signal(self, entry: Any, feed_title: str, now: datetime) -> Signal | None:
        key = str(entry.get("id") or entry.get("link") or "")
        if not key:
            return None  # nothing stable to track it by; cannot be resolved later
        title = _text(str(entry.get("title") or "")) or key
        markup = _markup(entry)
        state = _state(markup, title)
        labels = {"link": str(entry.get("link") or ""), "feed": feed_title,
                  "incident_status": state, "content": _text(markup),
                  "categories": ",".join(str(tag.get("term") or "")
                                         for tag in entry.get("tags") or [])}
        if state in MAINTENANCE_STATES or _SCHEDULED_EVENT.search(markup):
            labels.update(maintenance="true", severity="minor", native_severity="maintenance")
        return Signal(
            source=self.config.id, key=key,
            status="resolved" if state in RESOLVED_STATES else "firing",
            title=title, at=_time(entry) or now,
            labels={name: value for name, value in labels.items() if value},
            annotations={"link": labels["link"]} if labels["link"] else {})


class RssParser(AtomParser):
    kind = "rss"


def _markup(entry: Any) -> str:
    """The entry's HTML: full content where given, else the summary."""
    contents = entry.get("content") or []
    return "".join(str(part.get("value") or "") for part in contents) or \
        str(entry.get("summary") or "")


def _state(markup: str, title: str) -> str:
    found = _STATE_IN_HTML.search(markup)
    if found:
        return found.group(1).strip().lower()
    in_title = _STATE_IN_TITLE.match(title)
    return in_title.group(1).lower() if in_title else ""


def _text(markup: str) -> str:
    return " ".join(html.unescape(_TAG.sub(" ", markup)).split())[:MAX_LABEL_CHARS]


def _time(entry: Any) -> datetime | None:
    # dict.get, not entry.get: feedparser warns (DeprecationWarning) when a
    # missing `updated_parsed` is asked for through its own lookup.
    parsed = dict.get(entry, "updated_parsed") or dict.get(entry, "published_parsed")
    try:  # feedparser gives a UTC struct_time
        return datetime.fromtimestamp(calendar.timegm(parsed), UTC) if parsed else None
    except (TypeError, ValueError, OverflowError, OSError):
        return None
