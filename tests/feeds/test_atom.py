from __future__ import annotations

from datetime import UTC, datetime

import pytest

from switchboard.feeds import FeedError
from tests.feeds.cases import STREAMYARD_FIRST, fixture, parse

HISTORY = fixture("statuspage-history.atom")
RESOLVED_STEP = b"&lt;strong&gt;Resolved&lt;/strong&gt; - This incident has been resolved."


def test_it_reads_a_statuspage_history_feed() -> None:
    signals = parse("atom", HISTORY)

    assert len(signals) == 17
    first = signals[0]
    assert first.key == STREAMYARD_FIRST
    assert first.title == "Networking issues"
    assert first.status == "resolved"
    assert first.at == datetime(2024, 2, 9, 17, 35, 55, tzinfo=UTC)
    assert first.labels["link"] == "https://status.streamyard.com/incidents/l4222m9bmd6k"
    assert first.labels["feed"] == "StreamYard Status - Incident History"
    assert first.labels["incident_status"] == "resolved"
    assert first.labels["content"].startswith("Feb 8 , 09:00 UTC Resolved - This incident")
    assert signals[-1].key == "tag:status.streamyard.com,2005:Incident/9315466"
    assert signals[-1].title == "LinkedIn Comments Issue"


def test_every_entry_of_that_history_is_resolved() -> None:
    assert {s.status for s in parse("atom", HISTORY)} == {"resolved"}


@pytest.mark.parametrize("step", [b"Investigating", b"Identified", b"Monitoring", b"Update"])
def test_an_entry_whose_latest_step_is_not_resolved_is_firing(step: bytes) -> None:
    body = HISTORY.replace(RESOLVED_STEP, b"&lt;strong&gt;" + step + b"&lt;/strong&gt; - Oops.",
                           1)
    first = parse("atom", body)[0]
    assert (first.status, first.labels["incident_status"]) == ("firing", step.decode().lower())


def rss(items: str, head: str = "") -> bytes:
    return (f'<?xml version="1.0"?>{head}<rss version="2.0"><channel><title>Council news'
            f"</title><link>https://council.example.org</link>{items}</channel></rss>").encode()


ITEM = ("<item><title>Phone lines down</title><guid isPermaLink='false'>news-17</guid>"
        "<link>https://council.example.org/news/17</link><category>outage</category>"
        "<category>phones</category><description>&lt;p&gt;Our lines are down.&lt;/p&gt;"
        "</description><pubDate>Wed, 22 May 2024 20:52:00 GMT</pubDate></item>")


def test_it_reads_plain_rss_items_as_firing() -> None:
    [signal] = parse("rss", rss(ITEM))

    assert (signal.key, signal.status, signal.title) == ("news-17", "firing", "Phone lines down")
    assert signal.labels == {"link": "https://council.example.org/news/17", "feed": "Council news",
                             "content": "Our lines are down.", "categories": "outage,phones"}
    assert signal.at == datetime(2024, 5, 22, 20, 52, tzinfo=UTC)


def test_a_resolved_marker_in_the_title_resolves() -> None:
    [signal] = parse("rss", rss(ITEM.replace("Phone lines down", "[Resolved] Phone lines down")))
    assert signal.status == "resolved"


def test_an_item_without_guid_is_keyed_by_its_link() -> None:
    [signal] = parse("rss", rss(ITEM.replace("<guid isPermaLink='false'>news-17</guid>", "")))
    assert signal.key == "https://council.example.org/news/17"


def test_an_item_with_nothing_to_track_it_by_is_skipped() -> None:
    assert parse("rss", rss("<item><description>anonymous</description></item>")) == []


def test_an_empty_feed_gives_no_signals() -> None:
    assert parse("rss", rss("")) == []


def test_a_plain_doctype_is_allowed_for_old_rss() -> None:
    netscape = ('<!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS 0.91//EN" '
                '"http://my.netscape.com/publish/formats/rss-0.91.dtd">')
    assert [s.key for s in parse("rss", rss(ITEM, head=netscape))] == ["news-17"]


def test_a_sloppy_feed_with_html_entities_is_still_read() -> None:
    [signal] = parse("rss", rss(ITEM.replace("Phone lines", "Phone&nbsp;lines")))
    assert signal.title == "Phone lines down"  # &nbsp; read, then spaces folded


def test_a_cut_off_feed_is_refused_rather_than_read_as_fewer_entries() -> None:
    body = HISTORY[:HISTORY.index(b"</entry>", 10_000)]
    with pytest.raises(FeedError, match="document cut off"):
        parse("atom", body)


def test_bytes_that_look_like_a_file_name_are_never_opened() -> None:
    for body in (b"/etc/passwd", b"file:///etc/passwd", b"http://127.0.0.1:9/feed"):
        with pytest.raises(FeedError, match="not an RSS or Atom feed"):
            parse("atom", body)


def test_an_entity_declaration_after_junk_is_still_refused() -> None:
    body = b"\x00" + rss(ITEM, head='<!DOCTYPE rss [<!ENTITY a "b"><!ENTITY c "&a;&a;&a;">]>')
    with pytest.raises(FeedError, match="entity"):
        parse("rss", body)


def test_a_utf16_entity_declaration_is_refused() -> None:
    body = rss(ITEM, head='<!DOCTYPE rss [<!ENTITY a "b">]>').decode()
    with pytest.raises(FeedError, match="entity"):
        parse("rss", body.replace('version="1.0"', 'version="1.0" encoding="utf-16"')
              .encode("utf-16"))
