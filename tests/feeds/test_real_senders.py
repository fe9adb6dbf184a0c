"""Feeds read what real senders send (design §7.2): one test per class of misreading,
each on a published document kept under tests/fixtures (origins in SOURCES.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import text_format  # type: ignore[import-untyped]
from google.transit import gtfs_realtime_pb2

from switchboard.config import InvalidFile, load
from tests.feeds.cases import FIXTURES, feed_config, fixture, hmac_hex, parse
from tests.feeds.rig import Rig, rule

# -- PagerDuty v3 ----------------------------------------------------------

PD_REFERENCE_EVENTS = {  # official examples of events whose data is not the incident
    "pagerduty-v3-incident-workflow-started.json": "PBAZLIU",
    "pagerduty-v3-incident-action-invocation-created.json": "PBAZLIU",
    "pagerduty-v3-incident-role-assigned.json": "PBAZLIU",
    "pagerduty-v3-incident-task-created.json": "Q0SDD3HB6SGFTI",
}
PRIORITY_UPDATED = "pagerduty-v3-incident-priority-updated.json"


def pd_delivery(event_type: str, data_fixture: str) -> bytes:
    """PagerDuty's documented envelope (the priority_updated example) around one of
    its documented `data` objects: the docs publish those objects only on their own."""
    document = json.loads(fixture(PRIORITY_UPDATED))
    document["event"].update(id=f"01{event_type}", event_type=event_type,
                             data=json.loads(fixture(data_fixture)))
    return json.dumps(document).encode()


@pytest.mark.parametrize(("name", "incident"), sorted(PD_REFERENCE_EVENTS.items()))
def test_a_pagerduty_event_about_an_incident_is_keyed_by_that_incident(name: str,
                                                                       incident: str) -> None:
    [signal] = parse("pagerduty", fixture(name))
    assert signal.key == incident
    assert signal.timeline_only


@pytest.mark.parametrize("name", sorted(PD_REFERENCE_EVENTS))
def test_a_pagerduty_note_workflow_or_task_never_declares(tmp_path: Path, name: str) -> None:
    rig = Rig(tmp_path)
    feed = feed_config("pagerduty", rules=(rule(),))
    assert rig.feed_parse(feed, fixture(name), datetime(2024, 1, 1, tzinfo=UTC)) == ["ignored"]
    assert rig.all_incidents() == []


@pytest.mark.parametrize(("event_type", "data"), [
    ("incident.annotated", "pagerduty-v3-data-incident-note.json"),
    ("incident.responder.added", "pagerduty-v3-data-incident-responder.json"),
    ("incident.status_update_published", "pagerduty-v3-data-incident-status-update.json"),
])
def test_a_pagerduty_note_goes_on_the_timeline_of_its_incident(tmp_path: Path, event_type: str,
                                                               data: str) -> None:
    rig = Rig(tmp_path)
    feed = feed_config("pagerduty", rules=(rule(),))
    at = datetime(2020, 4, 9, 16, 0, tzinfo=UTC)
    assert rig.feed_parse(feed, fixture(PRIORITY_UPDATED), at) == ["declared"]
    assert rig.feed_parse(feed, pd_delivery(event_type, data), at) == ["noted"]

    [incident] = rig.all_incidents()
    notes = [e for e in rig.store.timeline(incident.id) if e.event == "signal_note"]
    assert len(notes) == 1 and notes[0].detail["event"] == event_type
    assert notes[0].detail["text"] == json.loads(fixture(data)).get(
        "content", json.loads(fixture(data)).get("message"))


def test_a_signed_responder_event_without_data_is_accepted(tmp_path: Path) -> None:
    # incident.responder.added used to be refused with 400 (its data has no id)
    rig = Rig(tmp_path)
    feed = feed_config("pagerduty", rules=(rule(),))
    body = pd_delivery("incident.responder.added", "pagerduty-v3-data-incident-responder.json")
    headers = {"X-PagerDuty-Signature": f"v1={hmac_hex(body)}"}
    answer = rig.run(rig.watch(feed).deliver(feed.id, body, headers))
    assert answer == {"accepted": 1, "outcomes": ["ignored"]}


def test_pagerduty_priority_and_urgency_reach_the_incident(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    feed = feed_config("pagerduty", rules=(rule(),))
    rig.feed_parse(feed, fixture(PRIORITY_UPDATED), datetime(2020, 4, 9, tzinfo=UTC))
    rig.feed_parse(feed, fixture("pagerduty-v3-incident-triggered.json"),
                   datetime(2025, 1, 24, tzinfo=UTC))

    by_key = {i.signal_key: i.severity for i in rig.all_incidents()}
    assert by_key == {"pagerduty-feed:PGR0VU2": "critical",  # priority P1
                      "pagerduty-feed:QEXAMPLE1": "major"}  # urgency high, no priority


def test_an_untitled_pagerduty_incident_is_named_by_number_and_service() -> None:
    document = json.loads(fixture("pagerduty-v3-incident-triggered.json"))
    del document["event"]["data"]["title"]
    [signal] = parse("pagerduty", json.dumps(document).encode())
    assert signal.title == "PagerDuty incident #7 on Test-Service"


# -- PagerDuty replays (finding 17) -----------------------------------------

TRIGGERED = fixture("pagerduty-v3-incident-triggered.json")
TRIGGERED_AT = datetime(2025, 1, 24, 7, 10, 5, tzinfo=UTC)


def test_a_replayed_pagerduty_delivery_never_reopens_a_resolved_incident(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    feed = feed_config("pagerduty", rules=(rule(),))
    assert rig.feed_parse(feed, TRIGGERED, TRIGGERED_AT) == ["declared"]
    [incident] = rig.all_incidents()
    rig.clock.set(TRIGGERED_AT + timedelta(hours=2))
    rig.resolve(incident.id)

    # a day later the same signed delivery arrives again
    assert rig.feed_parse(feed, TRIGGERED, TRIGGERED_AT + timedelta(days=1)) == ["replayed"]
    # and a copy with a new event id but the old occurrence time
    document = json.loads(TRIGGERED)
    document["event"]["id"] = "01ANOTHERDELIVERYOFTHESAMEEVENT"
    assert rig.feed_parse(feed, json.dumps(document).encode(),
                          TRIGGERED_AT + timedelta(days=1)) == ["stale"]
    assert [i.state for i in rig.all_incidents()] == ["resolved"]


def test_a_pagerduty_incident_reopened_after_resolution_declares_again(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    feed = feed_config("pagerduty", rules=(rule(),))
    rig.feed_parse(feed, TRIGGERED, TRIGGERED_AT)
    [first] = rig.all_incidents()
    rig.clock.set(TRIGGERED_AT + timedelta(hours=1))
    rig.resolve(first.id)
    document = json.loads(TRIGGERED)
    document["event"].update(id="01REOPENED", event_type="incident.reopened",
                             occurred_at="2025-01-24T09:30:00.000Z")
    assert rig.feed_parse(feed, json.dumps(document).encode(),
                          TRIGGERED_AT + timedelta(hours=3)) == ["declared"]


def test_pagerduty_event_ids_are_forgotten_after_seven_days(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    start = TRIGGERED_AT.timestamp()
    rig.store.remember_event("pd", "01OLD", start)
    rig.store.remember_event("pd", "01NEW", start + 7 * 86400 + 1)
    assert not rig.store.event_seen("pd", "01OLD")
    assert rig.store.event_seen("pd", "01NEW")


# -- Alertmanager (finding 19 and older senders) -----------------------------

def alertmanager_group(size: int) -> bytes:
    """The real firing delivery, as one group of `size` instances (Alertmanager sends
    every alert of a group in one delivery, each with its own fingerprint)."""
    document = json.loads(fixture("alertmanager-v4-firing.json"))
    alert = document["alerts"][0]
    document["alerts"] = [{**alert, "fingerprint": f"{i:016x}",
                           "labels": {**alert["labels"], "instance": f"https://s{i}.example.org"}}
                          for i in range(size)]
    return json.dumps(document).encode()


def test_one_alertmanager_group_of_30_alerts_is_one_incident(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    feed = feed_config("alertmanager", rules=(rule(match={"severity": "critical"}),))
    outcomes = rig.feed_parse(feed, alertmanager_group(30), datetime(2023, 2, 6, tzinfo=UTC))

    assert outcomes.count("declared") == 1
    assert len(rig.all_incidents()) == 1
    again = rig.feed_parse(feed, alertmanager_group(30), datetime(2023, 2, 6, 0, 5, tzinfo=UTC))
    assert "declared" not in again


def test_a_rule_with_per_alert_declares_one_incident_per_alert(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    feed = feed_config("alertmanager", rules=(rule(per="alert"),))
    rig.feed_parse(feed, alertmanager_group(3), datetime(2023, 2, 6, tzinfo=UTC))
    assert len(rig.all_incidents()) == 3


def test_a_group_incident_clears_only_when_the_whole_group_has(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    feed = feed_config("alertmanager", rules=(rule(),))
    rig.feed_parse(feed, alertmanager_group(2), datetime(2023, 2, 6, tzinfo=UTC))
    document = json.loads(alertmanager_group(2))
    document["alerts"][0]["status"] = "resolved"  # one instance back, group still firing
    assert rig.feed_parse(feed, json.dumps(document).encode(),
                          datetime(2023, 2, 6, 0, 5, tzinfo=UTC)) == ["repeated", "repeated"]
    document["status"] = "resolved"
    for alert in document["alerts"]:
        alert["status"] = "resolved"
    outcomes = rig.feed_parse(feed, json.dumps(document).encode(),
                              datetime(2023, 2, 6, 0, 10, tzinfo=UTC))
    assert outcomes == ["cleared", "repeated"]  # one notice for the group, not one per alert


def test_an_alert_without_its_own_status_takes_the_groups() -> None:
    document = json.loads(fixture("alertmanager-v4-resolved.json"))
    for alert in document["alerts"]:
        del alert["status"]  # as older senders and some relays send it
    signals = parse("alertmanager", json.dumps(document).encode())
    assert [s.status for s in signals] == ["resolved", "resolved"]


# -- CAP ---------------------------------------------------------------------

CANADA_ALLCLEAR = fixture("cap-1.2-environment-canada-allclear-en-fr.xml")
SENT_2012 = datetime(2012, 5, 2, 23, 25, tzinfo=UTC)


def test_a_cap_all_clear_clears_and_never_declares(tmp_path: Path) -> None:
    [signal] = parse("cap", CANADA_ALLCLEAR, now=SENT_2012)
    assert (signal.status, signal.key) == ("resolved", "2.49.0.1.124.a3f342a4.2012")

    rig = Rig(tmp_path)
    feed = feed_config("cap", rules=(rule(match={"event": "thunderstorm"}),))
    assert rig.feed_parse(feed, CANADA_ALLCLEAR, SENT_2012) == ["ignored"]
    assert rig.all_incidents() == []


def test_a_cap_message_of_urgency_past_never_declares(tmp_path: Path) -> None:
    body = fixture("cap-1.2-paaq-tsunami-past.xml")
    rig = Rig(tmp_path)
    feed = feed_config("cap", rules=(rule(),))
    assert rig.feed_parse(feed, body, datetime(2013, 1, 5, 10, 0, tzinfo=UTC)) == ["ignored"]


def test_the_configured_language_picks_the_cap_info_block() -> None:
    [english] = parse("cap", CANADA_ALLCLEAR, now=SENT_2012)
    [french] = parse("cap", CANADA_ALLCLEAR, now=SENT_2012, language="fr")
    [fallback] = parse("cap", CANADA_ALLCLEAR, now=SENT_2012, language="de")
    assert english.title == fallback.title == "severe thunderstorm watch"
    assert french.title == "veille d'orages violents"


NWS_WINTER = fixture("cap-1.2-nws-winter-weather.xml")
WINTER_EFFECTIVE = datetime(2021, 12, 27, 16, 8, tzinfo=UTC)


def test_a_cap_alert_before_its_onset_is_pending_unless_a_rule_leads() -> None:
    before = WINTER_EFFECTIVE - timedelta(hours=1)
    assert parse("cap", NWS_WINTER, now=before) == []
    [due] = parse("cap", NWS_WINTER, now=WINTER_EFFECTIVE)
    assert due.status == "firing"
    early = parse("cap", NWS_WINTER, now=before, rules=(rule(lead=timedelta(hours=2)),))
    assert [s.status for s in early] == ["firing"]


def test_a_restricted_cap_alert_is_ignored_unless_a_rule_names_its_scope(tmp_path: Path) -> None:
    # No restricted message is published; this is the real NSW RFS alert with its scope changed.
    body = fixture("cap-1.2-nsw-rfs-prefixed.xml").replace(
        b"<cap:scope>Public</cap:scope>", b"<cap:scope>Restricted</cap:scope>")
    at = datetime(2011, 10, 5, 14, 0, tzinfo=UTC)
    rig = Rig(tmp_path)
    public_only = feed_config("cap", rules=(rule(match={"event": "Fire"}),))
    assert rig.feed_parse(public_only, body, at) == ["unmatched"]
    opted_in = feed_config("cap", rules=(rule(match={"event": "Fire",
                                                      "cap_scope": ["Public", "Restricted"]}),))
    assert rig.feed_parse(opted_in, body, at) == ["declared"]


def test_cap_severity_is_normalised_and_a_rule_on_the_cap_word_still_matches(
        tmp_path: Path) -> None:
    body = fixture("cap-1.2-wcatwc-tsunami-warning.xml")
    at = datetime(2011, 9, 2, 11, 40, tzinfo=UTC)
    [signal] = parse("cap", body, now=at)
    assert (signal.labels["severity"], signal.labels["native_severity"]) == ("critical", "Extreme")

    rig = Rig(tmp_path)
    feed = feed_config("cap", rules=(rule(match={"severity": ["Severe", "Extreme"]}),))
    assert rig.feed_parse(feed, body, at) == ["declared"]
    assert [i.severity for i in rig.all_incidents()] == ["critical"]


# -- SIRI-SX -----------------------------------------------------------------

VDV_FIRST = fixture("siri-sx-2.1-vdv736-first-message.xml")
MAY_2017 = datetime(2017, 5, 28, 10, 30, tzinfo=UTC)


def test_siri_summary_is_read_in_the_configured_language() -> None:
    # The German summary comes first; an element without children is falsy, which
    # used to make every lookup fall back to it.
    [signal] = parse("siri-sx", VDV_FIRST, now=MAY_2017)
    assert signal.title == "Line disruption between Luzernerhof and Verkehrshaus"
    [german] = parse("siri-sx", VDV_FIRST, now=MAY_2017, language="de")
    assert german.title == "Unterbruch zwischen Luzernerhof und Verkehrshaus"
    [french] = parse("siri-sx", VDV_FIRST, now=MAY_2017, language="fr")  # none: English
    assert french.title == signal.title


def test_siri_2_1_alert_cause_is_the_reason(tmp_path: Path) -> None:
    [signal] = parse("siri-sx", VDV_FIRST, now=MAY_2017)
    assert signal.labels["reason"] == "fire"
    rig = Rig(tmp_path)
    feed = feed_config("siri-sx", rules=(rule(match={"reason": "fire"}),))
    assert rig.feed_parse(feed, VDV_FIRST, MAY_2017) == ["declared"]


def test_siri_severity_and_description_in_english() -> None:
    body = fixture("siri-sx-2.0-situation-exchange-response.xml")
    signals = parse("siri-sx", body, now=datetime(2004, 12, 17, 10, 0, tzinfo=UTC))
    bomb = next(s for s in signals if s.labels.get("reason") == "bombExplosion")
    assert bomb.title == "Bomb at Barchester station"
    assert (bomb.labels["severity"], bomb.labels["native_severity"]) == ("major", "severe")


def test_a_siri_end_message_resolves_and_never_declares(tmp_path: Path) -> None:
    body = fixture("siri-sx-2.1-vdv736-end-message.xml")
    rig = Rig(tmp_path)
    feed = feed_config("siri-sx", rules=(rule(),))
    outcomes = rig.feed_parse(feed, body, datetime(2017, 5, 28, 11, 0, tzinfo=UTC))
    assert outcomes and set(outcomes) == {"ignored"}


# -- Status pages --------------------------------------------------------------

SAUCE = fixture("statuspage-saucelabs-history-maintenance.atom")
MAINTENANCE_ID = b"tag:status.us-west-1.saucelabs.com,2005:Incident/5345139"


def sauce_while_scheduled() -> bytes:
    """The real feed as it read a week before the window: the maintenance entry
    with only its Scheduled step (the Completed and In progress ones cut)."""
    start = SAUCE.index(MAINTENANCE_ID)
    content = SAUCE.index(b"<content", start)
    scheduled = SAUCE.index(b"&lt;p&gt;&lt;small&gt;Oct &lt;var data-var='date'&gt;16", content)
    opening = SAUCE.index(b">", content) + 1
    return SAUCE[:opening] + SAUCE[scheduled:]


def test_status_page_maintenance_is_labelled_and_minor() -> None:
    signals = parse("atom", SAUCE)
    maintenance = [s for s in signals if s.labels.get("maintenance") == "true"]
    assert len(maintenance) == 6
    assert all(s.labels["severity"] == "minor" for s in maintenance)
    assert not any("maintenance" in s.labels for s in signals if "Incident" in s.title)


@pytest.mark.parametrize(("maintenance", "outcome"), [(False, "unmatched"), (True, "declared")])
def test_scheduled_maintenance_declares_only_where_the_rule_says_so(
        tmp_path: Path, maintenance: bool, outcome: str) -> None:
    rig = Rig(tmp_path)
    feed = feed_config("atom", rules=(rule(maintenance=maintenance),))
    signals = [s for s in parse("atom", sauce_while_scheduled())
               if s.key == MAINTENANCE_ID.decode()]
    assert [s.labels["incident_status"] for s in signals] == ["scheduled"]
    assert rig.apply(feed, signals) == [outcome]


def test_statuspage_json_maintenance_and_impact() -> None:
    [window] = parse("statuspage", fixture("statuspage-discord-scheduled-maintenances.json"))
    assert window.labels["maintenance"] == "true"
    assert (window.status, window.labels["severity"]) == ("resolved", "major")  # impact major
    assert parse("statuspage", fixture("statuspage-discord-summary.json")) == []


# -- GTFS-realtime -------------------------------------------------------------

def gtfs_alert(**changes: Any) -> bytes:
    """The spec's example feed with `severity_level` and a French header added: no
    published feed with these is kept in a repository (see SOURCES.md)."""
    message = text_format.Parse((FIXTURES / "gtfs-rt-alerts.asciipb").read_text(),
                                gtfs_realtime_pb2.FeedMessage())
    alert = message.entity[0].alert
    alert.severity_level = changes.get("severity", gtfs_realtime_pb2.Alert.SEVERE)
    alert.header_text.translation.insert(0, gtfs_realtime_pb2.TranslatedString.Translation(
        text="Arrêt Elm fermé", language="fr"))
    return bytes(message.SerializeToString())


GTFS_NOW = datetime.fromtimestamp(1284460000, UTC)


def test_gtfs_severity_level_is_normalised() -> None:
    [signal] = parse("gtfs-rt", gtfs_alert(), now=GTFS_NOW)
    assert (signal.labels["severity"], signal.labels["native_severity"]) == ("critical", "SEVERE")
    [info] = parse("gtfs-rt", gtfs_alert(severity=gtfs_realtime_pb2.Alert.INFO), now=GTFS_NOW)
    assert info.labels["severity"] == "minor"


def test_gtfs_translation_in_the_configured_language() -> None:
    [english] = parse("gtfs-rt", gtfs_alert(), now=GTFS_NOW)
    [french] = parse("gtfs-rt", gtfs_alert(), now=GTFS_NOW, language="fr")
    assert english.title.startswith("Stop at Elm street is closed")
    assert french.title == "Arrêt Elm fermé"


# -- config ------------------------------------------------------------------

def test_a_bad_language_tag_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "switchboard.yaml"
    path.write_text("channels:\n  - {id: outbox, kind: outbox, path: ./o.jsonl}\n"
                    "feeds:\n  - {id: w, kind: cap, url: 'http://127.0.0.1:9/a', "
                    "language: 'english please'}\n")
    with pytest.raises(InvalidFile, match="not a language tag"):
        load(path, env={})


def test_rule_options_for_real_senders_load_and_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "switchboard.yaml"
    path.write_text(
        "channels:\n  - {id: outbox, kind: outbox, path: ./o.jsonl}\n"
        "feeds:\n"
        "  - id: weather\n    kind: cap\n    url: 'http://127.0.0.1:9/a'\n"
        "    language: fr-CA\n"
        "    rules:\n"
        "      - {runbook: rb, lead: 30m, maintenance: true, per: alert}\n")
    [feed] = load(path, env={}).feeds
    assert feed.language == "fr-CA"
    assert (feed.rules[0].lead, feed.rules[0].maintenance, feed.rules[0].per) == (
        timedelta(minutes=30), True, "alert")
    path.write_text(path.read_text().replace("per: alert", "per: instance"))
    with pytest.raises(InvalidFile, match="must be one of group, alert"):
        load(path, env={})


# -- fixtures ----------------------------------------------------------------

def test_every_fixture_has_its_origin_in_sources() -> None:
    sources = (FIXTURES / "SOURCES.md").read_text()
    files = sorted(p.name for p in FIXTURES.iterdir() if p.name != "SOURCES.md")
    assert [name for name in files if f"`{name}`" not in sources] == []
