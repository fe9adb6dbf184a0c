from __future__ import annotations

from datetime import UTC, datetime

import pytest
from google.transit import gtfs_realtime_pb2

from switchboard.feeds import FeedError, Signal
from tests.feeds.cases import gtfs_fixture, parse

START, END = 1284457468, 1284468072


def at(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def feed() -> gtfs_realtime_pb2.FeedMessage:
    message = gtfs_realtime_pb2.FeedMessage()
    message.ParseFromString(gtfs_fixture())
    return message


def parse_message(message: gtfs_realtime_pb2.FeedMessage, now: int = START + 60) -> list[Signal]:
    return parse("gtfs-rt", message.SerializePartialToString(), now=at(now))


def test_it_reads_the_spec_example_alert() -> None:
    [signal] = parse("gtfs-rt", gtfs_fixture(), now=at(START + 60))

    assert signal.key == "0"
    assert signal.status == "firing"
    assert signal.title == "Stop at Elm street is closed, temporary stop at Oak street"
    assert signal.labels == {"route_id": "219,100", "stop_id": "16230,16299",
                             "cause": "CONSTRUCTION", "effect": "DETOUR"}
    assert signal.annotations == {
        "description": "Due to construction at Elm street the stop is closed. The temporary "
                       "stop can be found 300 meters north at Oak street",
        "url": "http://www.sometransitagency/alerts"}
    assert signal.at == at(1284457468)  # the feed header's timestamp
    assert signal.expires_at == at(END)


def test_an_alert_whose_period_has_ended_is_resolved() -> None:
    [signal] = parse("gtfs-rt", gtfs_fixture(), now=at(END))
    assert signal.status == "resolved"


def test_an_alert_not_yet_in_force_is_left_out() -> None:
    assert parse("gtfs-rt", gtfs_fixture(), now=at(START - 1)) == []


def test_an_alert_without_periods_is_firing_while_listed() -> None:
    message = feed()
    del message.entity[0].alert.active_period[:]
    [signal] = parse_message(message, now=END + 10**6)
    assert (signal.status, signal.expires_at) == ("firing", None)


def test_an_open_ended_period_is_active() -> None:
    message = feed()
    message.entity[0].alert.active_period[0].end = 0
    assert parse_message(message, now=END + 10**6)[0].status == "firing"


def test_a_deleted_entity_is_resolved() -> None:
    message = feed()
    message.entity[0].is_deleted = True
    assert parse_message(message)[0].status == "resolved"


def test_the_english_header_is_the_title() -> None:
    message = feed()
    header = message.entity[0].alert.header_text
    header.translation[0].language = "de"
    header.translation[0].text = "Haltestelle geschlossen"
    header.translation.add(text="Stop closed", language="en-GB")
    assert parse_message(message)[0].title == "Stop closed"


def test_agency_trip_and_severity_are_labelled() -> None:
    message = feed()
    alert = message.entity[0].alert
    alert.informed_entity.add(agency_id="metro")
    alert.informed_entity.add().trip.MergeFrom(
        gtfs_realtime_pb2.TripDescriptor(trip_id="t9", route_id="219"))
    alert.severity_level = gtfs_realtime_pb2.Alert.SEVERE
    labels = parse_message(message)[0].labels
    assert labels["agency_id"] == "metro"
    assert labels["trip_id"] == "t9"
    assert labels["route_id"] == "219,100"  # repeats folded
    assert labels["severity_level"] == "SEVERE"


def test_entities_that_are_not_alerts_are_ignored() -> None:
    message = feed()
    vehicle = message.entity.add(id="bus-7")
    vehicle.vehicle.vehicle.id = "7"
    assert [s.key for s in parse_message(message)] == ["0"]


def test_a_message_without_a_header_is_refused() -> None:
    message = feed()
    message.ClearField("header")
    with pytest.raises(FeedError, match="no header"):
        parse_message(message)
