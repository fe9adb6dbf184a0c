"""Whatever arrives, a parser answers with signals or FeedError, nothing else.

Examples per test: SWITCHBOARD_FUZZ_EXAMPLES (default 200, so CI stays fast;
raise it for a longer hunt).
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any

import pytest
from google.transit import gtfs_realtime_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switchboard.feeds import FeedError, FeedParser, Signal
from tests.feeds.cases import CASES, KINDS, PUSH_KINDS, XML_KINDS, fixture

FUZZ = settings(
    max_examples=int(os.environ.get("SWITCHBOARD_FUZZ_EXAMPLES", "200")),
    deadline=None, database=None,  # no .hypothesis/ left in the working tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
JSON_FIXTURES = {
    "alertmanager": ["alertmanager-v4-firing.json", "alertmanager-v4-resolved.json"],
    "json": ["alertmanager-v4-firing.json", "alertmanager-v4-resolved.json"],
    "pagerduty": ["pagerduty-v3-incident-triggered.json", "pagerduty-v3-incident-resolved.json",
                  "pagerduty-v3-incident-priority-updated.json"],
    "statuspage": ["statuspage-incidents.json"],
}
XML_SNIPPETS = ["<", ">", "</entry>", "<entry>", "&amp;", "&bogus;", "&#0;", "&#x110000;",
                "<![CDATA[", "]]>", "<!DOCTYPE x>", "\x00", "<cap:expires>soon</cap:expires>",
                "<msgType>Cancel</msgType>", "<references>a,b</references>", "<?pi?>",
                "<!-- c -->", "\u202e", "<info><language>en</language></info>", '"', "'"]

scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
           | st.text(max_size=20))
json_values = st.recursive(
    scalars, lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4), max_leaves=25)


def check(parser: FeedParser, body: bytes) -> None:
    case = CASES[parser.kind]
    try:
        signals = parser.parse(body, {}, case.now)
    except FeedError as exc:
        assert exc.reason == "malformed" and exc.message
        return
    for signal in signals:
        assert isinstance(signal, Signal)
        assert signal.key and isinstance(signal.key, str)
        assert signal.status in ("firing", "resolved")
        assert isinstance(signal.title, str) and signal.at.tzinfo is not None
        assert all(isinstance(k, str) and isinstance(v, str)
                   for k, v in (*signal.labels.items(), *signal.annotations.items()))
        signal.fields()


def slots(value: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) in a JSON document, to aim a mutation at."""
    if isinstance(value, dict):
        return [(value, k) for k in value] + [s for v in value.values() for s in slots(v)]
    if isinstance(value, list):
        return [(value, i) for i in range(len(value))] + [s for v in value for s in slots(v)]
    return []


@st.composite
def mutated_json(draw: st.DrawFn, kind: str) -> bytes:
    """A real payload with a few members replaced by wrong types or removed."""
    document = copy.deepcopy(json.loads(fixture(draw(st.sampled_from(JSON_FIXTURES[kind])))))
    for _ in range(draw(st.integers(1, 4))):
        targets = slots(document)
        if not targets:
            break
        container, key = draw(st.sampled_from(targets))
        if draw(st.booleans()) and isinstance(container, dict):
            del container[key]
        else:
            container[key] = draw(json_values)
    return json.dumps(document).encode()


@st.composite
def mutated_bytes(draw: st.DrawFn, original: bytes, snippets: list[str]) -> bytes:
    body = bytearray(original)
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(body)))
        choice = draw(st.integers(0, 2))
        if choice == 0:
            del body[at:at + draw(st.integers(1, 64))]
        elif choice == 1:
            body[at:at] = draw(st.sampled_from(snippets)).encode() if snippets \
                else draw(st.binary(min_size=1, max_size=8))
        else:
            body[at:at + 1] = draw(st.binary(min_size=1, max_size=1))
    return bytes(body)


time_range = st.builds(gtfs_realtime_pb2.TimeRange, start=st.integers(0, 2**64 - 1),
                       end=st.integers(0, 2**64 - 1))
translation = st.builds(gtfs_realtime_pb2.TranslatedString.Translation,
                        text=st.text(max_size=20), language=st.sampled_from(["", "en", "fr"]))


@st.composite
def gtfs_messages(draw: st.DrawFn) -> bytes:
    """Valid protobuf with extreme values: huge times, unknown enum numbers, empty texts."""
    message = gtfs_realtime_pb2.FeedMessage()
    message.header.gtfs_realtime_version = "2.0"
    message.header.timestamp = draw(st.integers(0, 2**64 - 1))
    for i in range(draw(st.integers(0, 3))):
        entity = message.entity.add(id=draw(st.text(max_size=5)) or str(i),
                                    is_deleted=draw(st.booleans()))
        alert = entity.alert
        alert.active_period.extend(draw(st.lists(time_range, max_size=3)))
        alert.header_text.translation.extend(draw(st.lists(translation, max_size=2)))
        for _ in range(draw(st.integers(0, 3))):
            alert.informed_entity.add(route_id=draw(st.text(max_size=4)),
                                      stop_id=draw(st.text(max_size=4)))
        alert.cause = draw(st.sampled_from(list(gtfs_realtime_pb2.Alert.Cause.values())))
        alert.effect = draw(st.sampled_from(list(gtfs_realtime_pb2.Alert.Effect.values())))
    return bytes(message.SerializeToString())


@pytest.mark.parametrize("kind", KINDS)
@FUZZ
@given(body=st.binary(max_size=2048))
def test_arbitrary_bytes(kind: str, body: bytes) -> None:
    check(CASES[kind].parser(), body)


@pytest.mark.parametrize("kind", KINDS)
@FUZZ
@given(document=json_values)
def test_arbitrary_json(kind: str, document: Any) -> None:
    check(CASES[kind].parser(), json.dumps(document).encode())


@pytest.mark.parametrize("kind", sorted(JSON_FIXTURES))
@FUZZ
@given(data=st.data())
def test_real_json_payloads_with_wrong_parts(kind: str, data: st.DataObject) -> None:
    check(CASES[kind].parser(), data.draw(mutated_json(kind)))


XML_FIXTURES = ["nws-alerts.atom", "statuspage-history.atom", "cap-1.2-oasis-example.xml",
                "cap-1.2-cancel.xml", "cap-1.2-oasis-example-a4-amber-multilingual.xml",
                "siri-sx-1.4-kolumbus-situations-trimmed.xml"]


@pytest.mark.parametrize("kind", XML_KINDS)
@FUZZ
@given(data=st.data())
def test_real_xml_payloads_with_damage(kind: str, data: st.DataObject) -> None:
    original = fixture(data.draw(st.sampled_from(XML_FIXTURES)))
    check(CASES[kind].parser(), data.draw(mutated_bytes(original, XML_SNIPPETS)))


@FUZZ
@given(data=st.data())
def test_real_gtfs_feed_with_damage(data: st.DataObject) -> None:
    check(CASES["gtfs-rt"].parser(), data.draw(mutated_bytes(CASES["gtfs-rt"].valid, [])))


@FUZZ
@given(body=gtfs_messages())
def test_gtfs_messages_with_extreme_values(body: bytes) -> None:
    check(CASES["gtfs-rt"].parser(), body)


header_names = st.sampled_from(["Authorization", "authorization", "X-PagerDuty-Signature",
                                "X-Signature", "Content-Type"])
header_values = st.text(max_size=80) | st.builds(lambda t: f"Bearer {t}", st.text(max_size=40)) \
    | st.builds(lambda t: f"v1={t},v1=", st.text(max_size=70))


@pytest.mark.parametrize("kind", PUSH_KINDS)
@FUZZ
@given(headers=st.dictionaries(header_names, header_values, max_size=4),
       body=st.binary(max_size=256))
def test_arbitrary_credentials_are_refused_cleanly(kind: str, headers: dict[str, str],
                                                   body: bytes) -> None:
    with pytest.raises(FeedError) as caught:
        CASES[kind].parser().authenticate(body, headers)
    assert caught.value.reason == "unauthorized"
