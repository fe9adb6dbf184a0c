from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from switchboard.feeds import FeedError
from tests.feeds.cases import fixture, parse

SIRI = fixture("siri-sx-1.4-kolumbus-situations-trimmed.xml")
CEST = timezone(timedelta(hours=2))


def reopened(body: bytes = SIRI) -> bytes:
    return body.replace(b"<Progress>closed</Progress>", b"<Progress>open</Progress>")


def test_it_reads_closed_situations_as_resolved() -> None:
    signals = parse("siri-sx", SIRI)

    assert [s.key for s in signals] == [f"urn:DISSE:{n}" for n in range(304, 311)]
    assert {s.status for s in signals} == {"resolved"}
    tunnel = signals[2]
    assert tunnel.title == ("Reduksjon i tilbudet på rute N89 pga. vedlikeholdsarbeid i "
                            "tunnelene. Se www.kolumbus.no for info.")
    assert tunnel.labels["line_ref"] == "1310"
    assert tunnel.labels["stop_point_ref"].startswith("11031244,11031245,")
    assert tunnel.labels["progress"] == "closed"
    assert tunnel.labels["reason"] == "UnknownReason"
    assert tunnel.labels["participant"] == "SwarcoMizar"
    # a producer time without offset, read in the delivery's +02:00
    assert tunnel.at == datetime(2013, 12, 9, 9, 16, 49, 580000, tzinfo=CEST)


def test_all_lines_is_labelled() -> None:
    assert parse("siri-sx", SIRI)[0].labels["all_lines"] == "true"


def test_an_open_situation_fires_within_its_validity_and_resolves_after() -> None:
    # urn:DISSE:305 is valid 2013-06-05 00:00 to 2013-06-09 00:00, local time (+02:00)
    during = {s.key: s.status for s in parse("siri-sx", reopened(),
                                              now=datetime(2013, 6, 6, tzinfo=UTC))}
    after = {s.key: s.status for s in parse("siri-sx", reopened(),
                                             now=datetime(2013, 6, 8, 22, 0, tzinfo=UTC))}
    assert during["urn:DISSE:305"] == "firing"
    assert after["urn:DISSE:305"] == "resolved"


def test_an_open_situation_not_yet_valid_is_left_out() -> None:
    keys = [s.key for s in parse("siri-sx", reopened(), now=datetime(2013, 6, 1, tzinfo=UTC))]
    assert "urn:DISSE:305" not in keys
    assert "urn:DISSE:304" in keys  # 17 May: already over, resolved


@pytest.mark.parametrize("progress", [b"draft", b"pendingApproval", b"approvedDraft"])
def test_unpublished_situations_are_left_out(progress: bytes) -> None:
    body = SIRI.replace(b"<Progress>closed</Progress>", b"<Progress>" + progress + b"</Progress>")
    assert parse("siri-sx", body) == []


def test_a_situation_without_number_is_refused() -> None:
    body = SIRI.replace(b"<SituationNumber>urn:DISSE:304</SituationNumber>", b"")
    with pytest.raises(FeedError, match="no SituationNumber"):
        parse("siri-sx", body)


def test_a_cap_alert_is_not_taken_for_siri() -> None:
    with pytest.raises(FeedError, match="expected a SIRI <Siri> document, not <alert>"):
        parse("siri-sx", fixture("cap-1.2-oasis-example.xml"))
