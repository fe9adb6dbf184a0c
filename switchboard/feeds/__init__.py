"""Incident feeds (design §3.5): one parser per kind, and the poll loop.

The contract every kind keeps (`parser.FeedParser`):

    parser = parser_for(config)          # ValueError: unusable config (unknown kind,
                                         #   bad `fields` for a json feed)
    parser.push                          # True: POST /feeds/{id}; False: polled
    parser.authenticate(body, headers)   # push kinds; FeedError("unauthorized", .., 401)
    parser.parse(body, headers, now)     # -> list[Signal]; FeedError("malformed", .., 400)

`parse` never raises anything but `FeedError`, whatever the bytes. Call
`authenticate` first, on the raw body exactly as received (signatures cover
the bytes). `now` is the daemon's clock, used for expiry (CAP `expires`,
GTFS-rt active periods) and for events that carry no time of their own.

Push kinds return the events in the delivery. Poll kinds return the feed's
current state, firing and resolved items alike; `poller.Poller` diffs it
against the previous poll, so disappearance also resolves:

    poller = Poller(config, parser_for(config), session, listener, clock=time.time)
    task = asyncio.create_task(poller.run())   # polls until...
    poller.stop()                              # ...this; then await the task

`listener` is a `poller.PollListener`: `await on_signals(feed_id, signals)`
(only new, changed and vanished items), `on_success(feed_id, unix_seconds)`,
`on_error(feed_id, reason, message)`.

Every parser gives `severity` in one vocabulary (`severity.py`: minor, major,
critical; the feed's own word as `native_severity`) and reads texts in the
feed's `language` (`translations.py`).

| kind         | module          | auth                    |
|--------------|-----------------|-------------------------|
| alertmanager | alertmanager.py | bearer token            |
| pagerduty    | pagerduty.py    | X-PagerDuty-Signature   |
| json         | jsonfeed.py     | bearer token and/or HMAC|
| cap          | cap.py          | (polled)                |
| atom, rss    | atom.py         | (polled)                |
| statuspage   | statuspage.py   | (polled)                |
| gtfs-rt      | gtfs_rt.py      | (polled)                |
| siri-sx      | siri_sx.py      | (polled)                |
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from switchboard.feeds.alertmanager import AlertmanagerParser
from switchboard.feeds.atom import AtomParser, RssParser
from switchboard.feeds.cap import CapParser
from switchboard.feeds.gtfs_rt import GtfsRealtimeParser
from switchboard.feeds.jsonfeed import JsonParser
from switchboard.feeds.pagerduty import PagerDutyParser
from switchboard.feeds.parser import FeedParser
from switchboard.feeds.signal import FeedError, Signal
from switchboard.feeds.siri_sx import SiriSxParser
from switchboard.feeds.statuspage import StatuspageParser

if TYPE_CHECKING:
    from switchboard.feeds.settings import FeedConfig

PARSERS: dict[str, type[FeedParser]] = {
    parser.kind: parser
    for parser in (AlertmanagerParser, PagerDutyParser, JsonParser, CapParser, AtomParser,
                   RssParser, StatuspageParser, GtfsRealtimeParser, SiriSxParser)
}


def parser_for(config: FeedConfig) -> FeedParser:
    """The parser for a feed; build it at (re)load so a bad mapping is a config error."""
    parser = PARSERS.get(config.kind)
    if parser is None:
        raise ValueError(f"feed {config.id!r}: unknown kind {config.kind!r} "
                         f"(kinds: {', '.join(sorted(PARSERS))})")
    return parser(config)


__all__ = ["PARSERS", "FeedError", "FeedParser", "Signal", "parser_for"]
