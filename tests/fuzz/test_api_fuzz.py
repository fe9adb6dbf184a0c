"""The HTTP API's inputs, fuzzed: only `Refused` may escape the domain code, and
the real daemon never answers 500 whatever JSON, path or query it is sent.

Two levels:
- in-process, fast: `posts.new_post`, `parse_when`, `parse_calendar` on arbitrary
  values (thousands of examples a second);
- the real daemon over loopback: arbitrary bodies to every POST endpoint and
  arbitrary ids and queries to every GET, one daemon per test.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

import pytest
import requests
from hypothesis import example, given
from hypothesis import strategies as st

from switchboard.clock import rfc3339
from switchboard.posts import KINDS, ChannelLimit, new_post, parse_calendar, parse_when
from switchboard.refusals import Refused
from tests.daemon import TOKENS, DaemonProcess
from tests.fuzz.strategies import FUZZ

TZ = ZoneInfo("Europe/London")
NOW = 1_790_000_000.0  # 2026-09-21
CHANNELS = {"outbox": ChannelLimit("outbox", 280), "ops-chat": ChannelLimit("ops-chat", 4000)}
ROLES = ("viewer", "marketing", "ops", "admin")
REFUSAL_STATUSES = {400, 403, 404, 409, 413, 422}

scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20))
json_values = st.recursive(
    scalars, lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4), max_leaves=20)

WHEN = ["now", "+10m", "+0s", "+1.5h", "+2d", "-5m", "+", "+10", "+10x", "+٣m",
        "+99999999d", "+999999999d", "+99999999999999999999d", "2026-12-01 09:00",
        "2026-12-01T09:00:00+00:00", "2026-12-01T09:00:00Z", "2026-03-29 01:30",
        "2026-10-25 01:30", "0001-01-01 00:00", "0001-01-01T00:00:00+23:59",
        "9999-12-31 23:59", "9999-12-31T23:59:59-23:59", "1970-01-01T00:00:00+00:00",
        "2026-02-30 09:00", "2026-12-01T25:00", " now ", "", "\x00", "2026-12-01 09:00 ",
        "20261201T090000", "2026-W49-2", "2026-335"]
when_text = (st.sampled_from(WHEN)
             | st.from_regex(r"\A\+[0-9]{1,22}(\.[0-9]{1,3})?[smhd]\Z")
             | st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}"
                             r"(:[0-9]{2}(\.[0-9]{1,6})?)?([+-][0-9]{2}:[0-9]{2}|Z)?\Z")
             | st.text(max_size=30))
field_values = (st.sampled_from(["outbox", "ops-chat", "nope", "", " ", "marketing",
                                 "operational", "x" * 281, "x" * 4001]) | when_text
                | json_values)
post_bodies = (st.dictionaries(st.sampled_from(["channel", "kind", "text", "link", "at",
                                                "due_at", "expires", "expires_at"])
                               | st.text(max_size=8), field_values, max_size=7)
               | json_values)


def representable(ts: float | None) -> None:
    """The API shows every time as RFC 3339: an accepted time must be showable."""
    rfc3339(ts)


@FUZZ
@given(value=when_text)
@example(value="+99999999999999999999d")
@example(value="+99999999d")
@example(value="9999-12-31T23:59:59-23:59")
def test_parse_when_refuses_or_gives_a_showable_time(value: str) -> None:
    try:
        ts = parse_when(value, NOW, TZ)
    except Refused as exc:
        assert exc.status == 400 and exc.message
        return
    representable(ts)


def _check_post(body: Any, role: str, default_kind: str) -> None:
    try:
        post = new_post(body, role=role, now=NOW, tz=TZ, channels=CHANNELS,
                        default_kind=default_kind)
    except Refused as exc:
        assert exc.status in REFUSAL_STATUSES and exc.message
        return
    assert post.channel in CHANNELS and post.kind in KINDS
    assert len(post.text) <= CHANNELS[post.channel].max_length and post.text.strip()
    assert post.expires_at is None or post.expires_at > post.due_at
    assert role == "admin" or (role == "marketing") == (post.kind == "marketing")
    representable(post.due_at)
    representable(post.expires_at)


@FUZZ
@given(body=post_bodies, role=st.sampled_from(ROLES),
       default_kind=st.sampled_from(["marketing", "operational"]))
@example(body={"channel": "outbox", "text": "far", "at": "+99999999d"}, role="marketing",
         default_kind="marketing")
def test_new_post_refuses_or_gives_a_valid_post(body: Any, role: str, default_kind: str) -> None:
    _check_post(body, role, default_kind)


csv_text = st.lists(st.lists(st.sampled_from(["channel", "at", "text", "kind", "expires",
                                              "link", "outbox", "+1h", "hello", "marketing",
                                              '"', ",", "\n", ""]) | st.text(max_size=8),
                             max_size=6).map(",".join), max_size=5).map("\n".join)
jsonl_text = st.lists(json_values.map(json.dumps) | st.text(max_size=20),
                      max_size=5).map("\n".join)


@FUZZ
@given(data=(csv_text | jsonl_text).map(str.encode) | st.binary(max_size=200),
       filename=st.sampled_from(["cal.csv", "cal.jsonl", "cal.json", "cal.txt", "cal"]))
def test_an_imported_calendar_refuses_or_gives_posts(data: bytes, filename: str) -> None:
    try:
        items = parse_calendar(data, filename)
    except Refused as exc:
        assert exc.status == 400 and exc.message.startswith(filename)
        return
    assert all(isinstance(item, dict) for item in items)
    for item in items:  # `post import` checks each one as the API does
        _check_post(item, "marketing", "marketing")


# -- the real daemon ---------------------------------------------------------------


@pytest.fixture(scope="module")
def daemons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, DaemonProcess]]:
    """One daemon per test below, so one test's damage cannot fail another."""
    started: dict[str, DaemonProcess] = {}
    try:
        for name in ("bodies", "paths"):
            started[name] = DaemonProcess(tmp_path_factory.mktemp(f"api-fuzz-{name}")).start()
        yield started
    finally:
        for proc in started.values():
            proc.kill()


def _answer_ok(response: requests.Response) -> None:
    seen = (response.request.method, response.request.url, response.status_code,
            response.text[:300])
    assert response.status_code < 500, seen
    data = response.json()
    if response.status_code >= 400:
        assert set(data) == {"error"} and data["error"]["code"] and data["error"]["message"], seen


def _no_tracebacks(proc: DaemonProcess) -> None:
    assert requests.get(proc.url + "/healthz", timeout=10).status_code == 200
    log = proc.log()
    assert "api_error" not in log and "Traceback" not in log, log[-3000:]


POST_PATHS = ["/api/v1/posts", "/api/v1/send", "/api/v1/incidents",
              "/api/v1/incidents/{incident}/update", "/api/v1/incidents/{incident}/resolve",
              "/api/v1/posts/{post}/cancel", "/api/v1/posts/{post}/release",
              "/api/v1/posts/{post}/drop"]
raw_bodies = (st.binary(max_size=64) | st.sampled_from([b"", b"{", b"\xff\xfe", b"[]", b"null",
                                                        b"1e999", b'"x"', b"[" * 5000]))
shaped_bodies = (post_bodies | st.lists(post_bodies, max_size=3)
                 | st.fixed_dictionaries({"runbook": st.sampled_from(
                     ["rail-disruption", "service-outage", "nope", ""]) | json_values,
                     "title": st.text(max_size=20) | json_values},
                     optional={"channels": json_values | st.just(["outbox"]),
                               "severity": json_values, "reason": json_values})
                 | st.fixed_dictionaries({}, optional={"text": st.text(max_size=30) | json_values,
                                                       "note": json_values,
                                                       "at": when_text | json_values}))


@FUZZ
@given(path=st.sampled_from(POST_PATHS), role=st.sampled_from(["admin", "marketing", "ops"]),
       post=st.integers(1, 30), incident=st.integers(1, 10), body=shaped_bodies | raw_bodies)
@example(path="/api/v1/posts", role="marketing", post=1, incident=1,
         body={"channel": "outbox", "text": "far", "at": "+99999999d"})
@example(path="/api/v1/incidents/{incident}/resolve", role="ops", post=1, incident=1,
         body=[None])
@example(path="/api/v1/posts/{post}/release", role="marketing", post=1, incident=1, body=1)
@example(path="/api/v1/incidents", role="ops", post=1, incident=1,
         body={"runbook": "service-outage", "title": "t", "severity": [1]})
@example(path="/api/v1/incidents", role="ops", post=1, incident=1,
         body={"runbook": "service-outage", "title": "t", "reason": {"a": 1}})
@example(path="/api/v1/posts", role="marketing", post=1, incident=1, body=b"[" * 5000)
@example(path="/api/v1/send", role="marketing", post=1, incident=1, body=b"1" * 5000)
def test_post_endpoints_take_any_body(daemons: dict[str, DaemonProcess], path: str, role: str,
                                      post: int, incident: int, body: Any) -> None:
    proc = daemons["bodies"]
    url = proc.url + path.format(post=post, incident=f"INC-{incident}")
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = requests.post(url, data=data, timeout=30, headers={
        "Authorization": f"Bearer {TOKENS[role]}", "Content-Type": "application/json"})
    _answer_ok(response)
    # What was accepted must still be listable and the daemon still healthy.
    _answer_ok(proc.api("GET", "/api/v1/posts?limit=1000"))
    _answer_ok(proc.api("GET", "/api/v1/status"))


ids = (st.integers(0, 10**6).map(str) | st.from_regex(r"\A[0-9]{15,30}\Z")
       | st.sampled_from(["0", "-1", "1.0", "²", "٣", "\uff11", "INC-1", "inc-1", "INC-²", "INC-",
                          "INC-99999999999999999999", "%00", "..", " 1", "1 "])
       | st.text(max_size=10))
queries = st.dictionaries(st.sampled_from(["state", "channel", "limit", "all", "x"]),
                          st.sampled_from(["scheduled", "held,failed", "", "1", "true", "²",
                                           "99999999999999999999", "-1", "outbox"])
                          | st.text(max_size=10), max_size=3)
GET_PATHS = ["/api/v1/posts/{id}", "/api/v1/incidents/{id}", "/api/v1/posts?{query}",
             "/api/v1/incidents?{query}"]


@FUZZ
@given(path=st.sampled_from(GET_PATHS), value=ids, query=queries)
@example(path="/api/v1/posts/{id}", value="²", query={})
@example(path="/api/v1/incidents/{id}", value="INC-99999999999999999999", query={})
@example(path="/api/v1/posts?{query}", value="1", query={"limit": "99999999999999999999"})
@example(path="/api/v1/posts/{id}", value="9" * 5000, query={})
def test_get_endpoints_take_any_id_and_query(daemons: dict[str, DaemonProcess], path: str,
                                             value: str, query: dict[str, str]) -> None:
    proc = daemons["paths"]
    url = proc.url + path.format(id=quote(value, safe=""), query=urlencode(query))
    response = requests.get(url, timeout=30,
                            headers={"Authorization": f"Bearer {TOKENS['viewer']}"})
    if response.status_code == 404 and "error" not in response.text:
        return  # aiohttp's own 404 for a path no route matches (e.g. an encoded '/')
    _answer_ok(response)


def test_the_fuzzed_daemons_logged_no_traceback(daemons: dict[str, DaemonProcess]) -> None:
    # Runs after the two tests above (file order): whatever they sent, no handler crashed.
    time.sleep(0.2)
    for proc in daemons.values():
        _no_tracebacks(proc)


