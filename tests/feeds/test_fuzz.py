"""Whatever arrives, a parser answers with signals or FeedError, nothing else.

Examples per test: SWITCHBOARD_FUZZ_EXAMPLES (default 200, so CI stays fast;
raise it for a longer hunt).
"""

from __future__ import annotations

import copy
import json
import os
import random
from typing import Any
from xml.etree import ElementTree

import pytest
from google.transit import gtfs_realtime_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switchboard.feeds import FeedError, FeedParser, Signal, parser_for
from tests.feeds.cases import (
    CASES,
    KINDS,
    PUSH_KINDS,
    REAL_DOCUMENTS,
    XML_KINDS,
    feed_config,
    fixture,
    real_body,
)

FUZZ = settings(
    max_examples=int(os.environ.get("SWITCHBOARD_FUZZ_EXAMPLES", "200")),
    deadline=None, database=None,  # no .hypothesis/ left in the working tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
JSON_FIXTURES = {kind: REAL_DOCUMENTS[kind]
                 for kind in ("alertmanager", "json", "pagerduty", "statuspage")}
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
                "siri-sx-1.4-kolumbus-situations-trimmed.xml",
                "cap-1.2-environment-canada-allclear-en-fr.xml",
                "siri-sx-2.1-vdv736-first-message.xml",
                "statuspage-saucelabs-history-maintenance.atom"]


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


# -- real documents in other valid shapes: the meaning must not move ----------

XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
EXTENSION = "{urn:example:producer-extension}"
SHAPE_DOCUMENTS = {
    "cap": REAL_DOCUMENTS["cap"],
    "siri-sx": [n for n in REAL_DOCUMENTS["siri-sx"] if "main-message" not in n],  # 100 KB+
    "atom": REAL_DOCUMENTS["atom"],
}


def meaning(signals: list[Signal]) -> list[tuple[Any, ...]]:
    """What a rule and an incident see, whatever the order it came in."""
    return sorted((s.key, s.status, s.title, sorted(s.labels.items()),
                   sorted(s.annotations.items())) for s in signals)


def _language(element: ElementTree.Element) -> str:
    if element.get(XML_LANG):
        return element.get(XML_LANG, "")
    return next((c.text or "" for c in element if c.tag.rpartition("}")[2] == "language"), "")


def _swap_languages(parent: ElementTree.Element, rng: random.Random) -> None:
    """Reorder same-named siblings by language (CAP <info>, SIRI <Summary>...), keeping
    the order of those in one language: which one is chosen must not depend on it."""
    children = list(parent)
    by_name: dict[str, list[ElementTree.Element]] = {}
    for child in children:
        if isinstance(child.tag, str):
            by_name.setdefault(child.tag, []).append(child)
    for same in by_name.values():
        languages = list(dict.fromkeys(_language(e) for e in same))
        if len(same) < 2 or len(languages) < 2:
            continue
        rng.shuffle(languages)
        reordered = [e for lang in languages for e in same if _language(e) == lang]
        slots = [i for i, c in enumerate(children) if c in same]
        for slot, element in zip(slots, reordered, strict=True):
            children[slot] = element
    parent[:] = children


def _reorder_blocks(root: ElementTree.Element, rng: random.Random) -> None:
    """Shuffle the independent blocks: Atom entries, SIRI situations."""
    for parent in root.iter():
        blocks = [c for c in parent if isinstance(c.tag, str)
                  and c.tag.rpartition("}")[2] in ("entry", "PtSituationElement")]
        if len(blocks) > 1:
            order = blocks[:]
            rng.shuffle(order)
            children = list(parent)
            slots = [i for i, c in enumerate(children) if c in blocks]
            for slot, element in zip(slots, order, strict=True):
                children[slot] = element
            parent[:] = children


def _extend(root: ElementTree.Element, rng: random.Random) -> None:
    """Producers' own elements in their own namespace, named like the format's, in
    any element that holds elements (never inside a text element: not valid)."""
    parents = [e for e in root.iter()
               if isinstance(e.tag, str) and len(e) and not (e.text or "").strip()]
    for _ in range(rng.randint(1, 4)):
        parent = rng.choice(parents)
        name = rng.choice(["note", "Summary", "severity", "headline", "title", "Progress"])
        extra = ElementTree.Element(f"{EXTENSION}{name}")
        extra.text = "producer extension"
        parent.insert(rng.randint(0, len(parent)), extra)


@st.composite
def reshaped(draw: st.DrawFn, kind: str) -> tuple[bytes, bytes]:
    """(original, the same document in another valid shape)."""
    original = real_body(draw(st.sampled_from(SHAPE_DOCUMENTS[kind])))
    root = ElementTree.fromstring(original)  # our own fixtures: no hostile input here
    rng = random.Random(draw(st.integers(0, 2**32)))
    for step in draw(st.lists(st.sampled_from([_swap_languages, _reorder_blocks, _extend]),
                              min_size=1, max_size=3)):
        if step is _swap_languages:
            for parent in list(root.iter()):
                _swap_languages(parent, rng)
        else:
            step(root, rng)
    # ElementTree writes its own prefixes (ns0:alert): another valid namespace shape.
    return original, ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)


@pytest.mark.parametrize(("kind", "language"), [
    ("cap", "en"), ("cap", "fr"), ("cap", "de"), ("siri-sx", "en"), ("siri-sx", "de"),
    ("siri-sx", "fr"), ("atom", "en")])  # atom has no translations to choose among
@FUZZ
@given(data=st.data())
def test_real_documents_in_other_valid_shapes_mean_the_same(kind: str, language: str,
                                                            data: st.DataObject) -> None:
    original, shaped = data.draw(reshaped(kind))
    parser = parser_for(feed_config(kind, language=language))
    now = CASES[kind].now
    assert meaning(parser.parse(shaped, {}, now)) == meaning(parser.parse(original, {}, now))


@pytest.mark.parametrize("kind", ["alertmanager", "pagerduty", "statuspage"])
@FUZZ
@given(data=st.data())
def test_real_json_documents_with_members_reordered_mean_the_same(kind: str,
                                                                  data: st.DataObject) -> None:
    original = real_body(data.draw(st.sampled_from(REAL_DOCUMENTS[kind])))
    rng = random.Random(data.draw(st.integers(0, 2**32)))

    def shuffled(value: Any) -> Any:
        if isinstance(value, dict):
            items = list(value.items())
            rng.shuffle(items)
            return {k: shuffled(v) for k, v in items}
        if isinstance(value, list) and kind == "alertmanager":
            return rng.sample([shuffled(v) for v in value], len(value))
        return [shuffled(v) for v in value] if isinstance(value, list) else value

    shaped = json.dumps(shuffled(json.loads(original)), indent=rng.choice([None, 2])).encode()
    parser = CASES[kind].parser()
    now = CASES[kind].now
    assert meaning(parser.parse(shaped, {}, now)) == meaning(parser.parse(original, {}, now))
