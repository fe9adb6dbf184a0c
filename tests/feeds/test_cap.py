from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from switchboard.feeds import FeedError
from tests.feeds.cases import NWS_NOW, fixture, parse

PDT = timezone(timedelta(hours=-7))
THUNDERSTORM = fixture("cap-1.2-oasis-example.xml")


def test_it_reads_a_cap_alert() -> None:
    [signal] = parse("cap", THUNDERSTORM, now=datetime(2003, 6, 17, 15, 0, tzinfo=PDT))

    assert signal.key == "KSTO1055887203"
    assert signal.status == "firing"
    assert signal.title == "SEVERE THUNDERSTORM WARNING"
    assert signal.at == datetime(2003, 6, 17, 14, 57, tzinfo=PDT)
    assert signal.expires_at == datetime(2003, 6, 17, 16, 0, tzinfo=PDT)
    assert signal.labels == {
        "severity": "major", "native_severity": "Severe", "urgency": "Immediate",
        "certainty": "Observed", "event": "SEVERE THUNDERSTORM", "category": "Met",
        "cap_scope": "Public", "responseType": "Shelter",
        "areaDesc": "EXTREME NORTH CENTRAL TUOLUMNE COUNTY IN CALIFORNIA, EXTREME NORTHEASTERN "
                    "CALAVERAS COUNTY IN CALIFORNIA, SOUTHWESTERN ALPINE COUNTY IN CALIFORNIA",
        "senderName": "NATIONAL WEATHER SERVICE SACRAMENTO CA", "sender": "KSTO@NWS.NOAA.GOV",
        "msgType": "Alert", "identifier": "KSTO1055887203", "cap_status": "Actual"}
    assert signal.annotations["instruction"] == (
        "TAKE COVER IN A SUBSTANTIAL SHELTER UNTIL THE STORM PASSES.")


def test_an_expired_alert_is_resolved() -> None:
    [signal] = parse("cap", THUNDERSTORM, now=datetime(2003, 6, 17, 16, 0, tzinfo=PDT))
    assert signal.status == "resolved"


def test_an_alert_without_expiry_stays_firing() -> None:
    [signal] = parse("cap", fixture("cap-1.2-oasis-example-a1-homeland-security.xml"))
    assert (signal.key, signal.status) == ("43b080713727", "firing")
    assert signal.title == "Homeland Security Sets Code ORANGE"
    assert signal.labels["category"] == "Security"
    assert signal.expires_at is None


def test_an_update_keeps_the_key_of_the_alert_it_references() -> None:
    [signal] = parse("cap", fixture("cap-1.2-oasis-example-a3-earthquake-update.xml"))

    assert signal.key == "TRI13970876.1"
    assert signal.labels["identifier"] == "TRI13970876.2"
    assert signal.labels["msgType"] == "Update"
    # urgency Past: a report of an earthquake already over clears, never declares
    assert signal.status == "resolved"
    assert signal.title == "EQ 3.4 Imperial County CA"


def test_a_cancel_resolves_the_alert_it_references() -> None:
    [signal] = parse("cap", fixture("cap-1.2-cancel.xml"))

    assert signal.key == "AS-NV-e18921c7-1b35-4a81-9705-42d25c265ddd"
    assert signal.status == "resolved"
    assert signal.labels == {"sender": "bbrundage@dps.state.nv.us", "msgType": "Cancel",
                             "identifier": "AS-NV-58d33e3a-1f9a-4909-9d59-34e90b33b3e8",
                             "cap_status": "Actual", "cap_scope": "Public"}
    assert signal.at == datetime(2019, 4, 19, 17, 46, 20, tzinfo=UTC)


def test_the_english_info_block_is_used() -> None:
    [signal] = parse("cap", fixture("cap-1.2-oasis-example-a4-amber-multilingual.xml"))
    assert signal.labels["event"] == "Child Abduction"
    assert signal.labels["senderName"] == "Los Angeles Police Dept - LAPD"
    assert signal.title == "Amber Alert in Los Angeles County"


def test_spanish_is_used_when_it_is_the_only_language() -> None:
    text = fixture("cap-1.2-oasis-example-a4-amber-multilingual.xml").decode()
    start, end = text.index("<info>"), text.index("</info>") + len("</info>")
    [signal] = parse("cap", (text[:start] + text[end:]).encode())
    assert signal.labels["event"] == "Abducción de Niño"


@pytest.mark.parametrize("status", ["Test", "Draft", "System"])
def test_messages_not_meant_to_be_acted_on_are_ignored(status: str) -> None:
    body = THUNDERSTORM.replace(b"<status>Actual</status>", f"<status>{status}</status>".encode())
    assert parse("cap", body) == []


def test_an_exercise_is_kept_and_labelled() -> None:
    body = THUNDERSTORM.replace(b"<status>Actual</status>", b"<status>Exercise</status>")
    assert parse("cap", body)[0].labels["cap_status"] == "Exercise"


def test_an_acknowledgement_is_ignored() -> None:
    body = THUNDERSTORM.replace(b"<msgType>Alert</msgType>", b"<msgType>Ack</msgType>")
    assert parse("cap", body) == []


def test_cap_1_1_is_read_too() -> None:
    body = THUNDERSTORM.replace(b"emergency:cap:1.2", b"emergency:cap:1.1")
    assert parse("cap", body)[0].key == "KSTO1055887203"


def test_an_alert_without_identifier_is_refused() -> None:
    body = THUNDERSTORM.replace(b"<identifier>KSTO1055887203</identifier>", b"")
    with pytest.raises(FeedError, match="no identifier"):
        parse("cap", body)


def test_any_dtd_is_refused_even_without_entities() -> None:
    body = THUNDERSTORM.replace(b"<alert ", b'<!DOCTYPE alert SYSTEM "cap.dtd">\n<alert ', 1)
    with pytest.raises(FeedError, match="DTD"):
        parse("cap", body)


def test_a_siri_document_is_not_taken_for_cap() -> None:
    with pytest.raises(FeedError, match="expected a CAP <alert> or an Atom <feed>, not <Siri>"):
        parse("cap", fixture("siri-sx-1.4-kolumbus-situations-trimmed.xml"))


NWS = fixture("nws-alerts.atom")
FLOOD_WARNING = ("https://api.weather.gov/alerts/urn:oid:2.49.0.1.840.0."
                 "601ab091b19b7cc3ccf16c56e68e88c53ff3d7c3.001.1")


def test_it_reads_an_nws_atom_index() -> None:
    warning, advisory = parse("cap", NWS, now=NWS_NOW)

    assert warning.key == FLOOD_WARNING
    assert warning.status == advisory.status == "firing"
    assert warning.title == ("Flood Warning issued May 22 at 8:52PM EDT until May 26 at 1:00PM "
                             "EDT by NWS Tallahassee FL")
    assert warning.labels == {
        "severity": "major", "native_severity": "Severe", "urgency": "Immediate",
        "certainty": "Observed", "event": "Flood Warning", "category": "Met",
        "areaDesc": "Brooks, GA; Lowndes, GA",
        "msgType": "Update", "cap_status": "Actual"}
    assert warning.annotations["link"] == FLOOD_WARNING + ".cap"
    assert warning.expires_at == datetime(2024, 5, 23, 13, 45, tzinfo=UTC)
    assert advisory.labels["event"] == "Flood Advisory"
    assert (advisory.labels["severity"], advisory.labels["native_severity"]) == ("minor", "Minor")


def test_index_entries_resolve_when_they_expire() -> None:
    # the advisory expires 21:02 EDT (01:02 UTC), the warning 09:45 EDT next morning
    statuses = [s.status for s in parse("cap", NWS, now=datetime(2024, 5, 23, 1, 2, tzinfo=UTC))]
    assert statuses == ["firing", "resolved"]


def test_an_index_entry_may_embed_a_whole_alert() -> None:
    alert = THUNDERSTORM.split(b"?>", 1)[1].decode()
    body = ('<feed xmlns="http://www.w3.org/2005/Atom"><entry><id>urn:x</id>'
            f"<title>Storm</title><content type='application/cap+xml'>{alert}</content>"
            "</entry></feed>").encode()
    [signal] = parse("cap", body, now=datetime(2003, 6, 17, 15, 0, tzinfo=PDT))
    assert signal.key == "KSTO1055887203"
    assert signal.title == "SEVERE THUNDERSTORM WARNING"


def test_an_index_entry_without_any_id_is_refused() -> None:
    body = b'<feed xmlns="http://www.w3.org/2005/Atom"><entry><title>x</title></entry></feed>'
    with pytest.raises(FeedError, match="no identifier"):
        parse("cap", body)


def test_an_empty_index_gives_no_signals() -> None:
    assert parse("cap", b'<feed xmlns="http://www.w3.org/2005/Atom"><title/></feed>') == []
