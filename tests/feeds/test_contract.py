"""The contract every feed kind keeps, run over each (see switchboard/feeds/__init__.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from switchboard.config import FeedConfig
from switchboard.feeds import PARSERS, FeedError, parser_for
from tests.feeds.cases import (
    CASES,
    CLEARING_DOCUMENTS,
    KINDS,
    NWS_NOW,
    POLL_KINDS,
    PUSH_KINDS,
    REAL_DOCUMENTS,
    XML_KINDS,
    FeedCase,
    billion_laughs,
    external_entity,
    feed_config,
    random_bytes,
    real_body,
)
from tests.feeds.rig import Rig, rule


@pytest.fixture(params=KINDS)
def case(request: pytest.FixtureRequest) -> FeedCase:
    return CASES[request.param]


@pytest.fixture(params=PUSH_KINDS)
def push(request: pytest.FixtureRequest) -> FeedCase:
    return CASES[request.param]


def refused(case: FeedCase, body: bytes) -> FeedError:
    with pytest.raises(FeedError) as caught:
        case.parser().parse(body, {}, case.now)
    assert caught.value.reason == "malformed", caught.value.message
    assert caught.value.http_status == 400
    assert caught.value.message.startswith(f"malformed {case.kind} payload: ")
    return caught.value


def test_every_configurable_kind_has_a_parser() -> None:
    from switchboard.config import FEED_KINDS

    assert set(FEED_KINDS) <= set(PARSERS) == set(KINDS)


def test_an_unknown_kind_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="unknown kind 'smoke-signals'"):
        parser_for(feed_config("smoke-signals"))


def test_it_turns_a_real_payload_into_signals(case: FeedCase) -> None:
    signals = case.parser().parse(case.valid, {}, case.now)

    assert [s.key for s in signals][:len(case.keys)] == case.keys
    assert len(signals) == case.extra.get("count", len(case.keys))
    for signal in signals:
        assert signal.source == f"{case.kind}-feed"
        assert signal.status in ("firing", "resolved")
        assert signal.title
        assert signal.at.tzinfo is not None
        assert all(isinstance(v, str) for v in (*signal.labels.values(),
                                                 *signal.annotations.values()))


def test_it_is_pure(case: FeedCase) -> None:
    parser = case.parser()
    assert parser.parse(case.valid, {}, case.now) == parser.parse(case.valid, {}, case.now)


def test_it_refuses_an_empty_body(case: FeedCase) -> None:
    assert "empty body" in refused(case, b"").message


def test_it_refuses_whitespace(case: FeedCase) -> None:
    if case.kind == "gtfs-rt":  # whitespace bytes are a protobuf field tag, still refused
        refused(case, b" \n\t ")
    else:
        assert "empty body" in refused(case, b" \n\t ").message


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_it_refuses_a_truncated_body(case: FeedCase, fraction: float) -> None:
    refused(case, case.valid[:int(len(case.valid) * fraction)])


def test_it_refuses_the_wrong_top_level_type(case: FeedCase) -> None:
    refused(case, case.wrong_top_level())


@pytest.mark.parametrize("seed", range(5))
def test_it_refuses_random_bytes(case: FeedCase, seed: int) -> None:
    refused(case, random_bytes(seed))


def test_it_refuses_non_utf8_json_or_xml(case: FeedCase) -> None:
    refused(case, b"\xff\xfe\xfa not text \x80\x81")


def test_it_refuses_a_json_value_that_is_not_a_document(case: FeedCase) -> None:
    for body in (b"null", b"42", b'"firing"', b"true"):
        refused(case, body)


def test_it_refuses_an_entity_bomb(case: FeedCase) -> None:
    error = refused(case, billion_laughs(case.root_element()))
    if case.kind in XML_KINDS:
        assert "entity" in error.message


def test_it_refuses_an_external_entity(case: FeedCase) -> None:
    error = refused(case, external_entity(case.root_element()))
    assert "root:" not in error.message
    if case.kind in XML_KINDS:
        assert "entity" in error.message


def test_it_refuses_an_external_entity_reaching_out_to_the_network(case: FeedCase) -> None:
    refused(case, external_entity(case.root_element(), "http://127.0.0.1:9/steal"))


def test_it_refuses_a_json_nesting_bomb(case: FeedCase) -> None:
    refused(case, b"[" * 100_000 + b"]" * 100_000)


@pytest.mark.parametrize("kind", POLL_KINDS)
def test_a_poll_feed_accepts_no_deliveries(kind: str) -> None:
    case = CASES[kind]
    with pytest.raises(FeedError) as caught:
        case.parser().authenticate(case.valid, {"Authorization": "Bearer anything"})
    assert (caught.value.reason, caught.value.http_status) == ("unauthorized", 401)


def unauthorized(case: FeedCase, headers: dict[str, str], body: bytes | None = None) -> str:
    with pytest.raises(FeedError) as caught:
        case.parser().authenticate(case.valid if body is None else body, headers)
    assert (caught.value.reason, caught.value.http_status) == ("unauthorized", 401)
    return caught.value.message


def test_a_genuine_delivery_passes(push: FeedCase) -> None:
    push.parser().authenticate(push.valid, push.good_headers(push.valid))


def test_header_names_are_case_insensitive(push: FeedCase) -> None:
    headers = {name.lower(): value for name, value in push.good_headers(push.valid).items()}
    push.parser().authenticate(push.valid, headers)


def test_a_delivery_without_credentials_is_refused(push: FeedCase) -> None:
    assert "missing" in unauthorized(push, {})


def test_a_delivery_with_wrong_credentials_is_refused(push: FeedCase) -> None:
    wrong = {name: value[:-4] + "beef" for name, value in push.good_headers(push.valid).items()}
    unauthorized(push, wrong)


def test_credentials_for_another_body_are_refused(push: FeedCase) -> None:
    headers = push.good_headers(push.valid)
    tampered = push.valid.replace(b"critical", b"info ").replace(b"high", b"low ")
    if push.kind == "alertmanager":  # a bearer token does not cover the body
        push.parser().authenticate(tampered, headers)
    else:
        unauthorized(push, headers, tampered)


def test_credentials_of_another_feed_are_refused(push: FeedCase) -> None:
    other = {"Authorization": "Bearer another-feeds-token",
             "X-PagerDuty-Signature": "v1=" + "0" * 64, "X-Signature": "0" * 64}
    unauthorized(push, other)


def test_the_error_never_echoes_the_secret(push: FeedCase) -> None:
    message = unauthorized(push, {"Authorization": "Bearer guess"})
    assert "guess" not in message and "s3cret" not in message and "pd-webhook" not in message


# -- over every kind, on every real document ---------------------------------

def catch_all(kind: str) -> FeedConfig:
    """A feed whose one rule takes everything a rule can be made to take."""
    return feed_config(kind, rules=(rule(maintenance=True, match={}),
                                    rule(maintenance=True, match={"cap_scope": SCOPES})))


SCOPES = ["Public", "Restricted", "Private"]
REAL = [(kind, name) for kind in KINDS for name in REAL_DOCUMENTS[kind]]
CLEARING = [(kind, name) for kind, names in CLEARING_DOCUMENTS.items() for name in names]


@pytest.mark.parametrize(("kind", "name"), REAL)
def test_a_real_document_is_never_refused(tmp_path: Path, kind: str, name: str) -> None:
    """A valid delivery never answers 4xx (a refused push is retried, then disabled)."""
    body, case, rig = real_body(name), CASES[kind], Rig(tmp_path)
    if case.push:
        feed = catch_all(kind)
        answer = rig.run(rig.watch(feed).deliver(feed.id, body, case.good_headers(body)))
        assert answer["accepted"] == len(answer["outcomes"])
    else:
        case.parser().parse(body, {}, case.now)


@pytest.mark.parametrize(("kind", "name"), REAL)
def test_a_document_never_declares_more_incidents_than_it_has_alerts(tmp_path: Path, kind: str,
                                                                     name: str) -> None:
    body, rig = real_body(name), Rig(tmp_path)
    feed = catch_all(kind)
    for now in MOMENTS:
        signals = parser_for(feed).parse(body, {}, now)
        rig.clock.set(now)
        rig.apply(feed, signals)
        # Alertmanager: one incident per group (one group per delivery) by default
        limit = 1 if kind == "alertmanager" and signals else len({s.key for s in signals})
        assert len(rig.active()) <= limit
        for incident in rig.active():
            rig.resolve(incident.id)


@pytest.mark.parametrize(("kind", "name"), CLEARING)
def test_a_clearing_message_never_declares(tmp_path: Path, kind: str, name: str) -> None:
    body, rig = real_body(name), Rig(tmp_path)
    feed = catch_all(kind)
    for now in MOMENTS:
        rig.clock.set(now)
        assert "declared" not in rig.apply(feed, parser_for(feed).parse(body, {}, now))
    assert rig.all_incidents() == []


# Clocks at which the documents above are in force, long over, or not yet due.
MOMENTS = [datetime(2000, 1, 1, tzinfo=UTC), datetime(2003, 6, 17, 22, 0, tzinfo=UTC),
           datetime(2012, 5, 2, 23, 25, tzinfo=UTC), datetime(2017, 5, 28, 10, 30, tzinfo=UTC),
           NWS_NOW, datetime(2030, 1, 1, tzinfo=UTC)]
