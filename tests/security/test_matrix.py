"""Who may do what, against one real daemon: every endpoint x role x credential.

The rows live in `matrix.py`, which also renders the tables of
docs/reliability.md (## Security matrix); the last tests check that the doc and
the daemon's route table agree with them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests

from switchboard.api import Api
from tests.daemon import ROOT, TOKENS, DaemonProcess, base_config, free_port
from tests.security import matrix
from tests.security.matrix import (
    CREDENTIALS,
    ENDPOINTS,
    FEED_CASES,
    PERSON_CREDENTIALS,
    PERSONS,
    ROLES,
    Endpoint,
    FeedCase,
)

pytestmark = pytest.mark.integration

DRILL_RUNBOOK = f"""\
name: {matrix.RUNBOOK}
title: Security matrix drill
severity: minor
scope: [outbox]
handover:
  notify: [ops-chat]
resolve:
  cooldown: 0m
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    tmp = tmp_path_factory.mktemp("matrix")
    # The polled feed points at a closed loopback port: it only has to exist.
    channels = [{"id": cid, "kind": "outbox", "path": str(tmp / f"{cid}.jsonl")}
                for cid in ("outbox", "parks-fb")]
    channels += [{"id": "lib-review", "kind": "outbox", "approval": "required",
                  "path": str(tmp / "lib-review.jsonl")},
                 {"id": "ops-chat", "kind": "outbox", "audience": "internal",
                  "path": str(tmp / "ops-chat.jsonl")}]
    config = base_config(tmp, 0, channels=channels, teams=matrix.TEAMS,
                         feeds=matrix.feed_config(f"http://127.0.0.1:{free_port()}/"))
    proc = DaemonProcess(tmp, config=config, runbooks={matrix.RUNBOOK: DRILL_RUNBOOK},
                         env=matrix.FEED_ENV)
    proc.start()
    try:
        yield proc
    finally:
        proc.kill()


@pytest.fixture(scope="module")
def people(daemon: DaemonProcess) -> dict[tuple[str, str], str]:
    """One person per kind: (kind, credential) -> token, for `right` and `revoked`
    (a token issued and then revoked; the right one is issued after)."""
    tokens: dict[tuple[str, str], str] = {}
    for kind, (role, teams) in {**matrix.PERSON_SETUP,
                                matrix.AUTHOR: ("viewer", ["libraries:marketing"])}.items():
        name = kind if kind == matrix.AUTHOR else f"matrix-{kind}"
        daemon.ok("POST", "/api/v1/users", {"name": name, "role": role, "teams": teams})
        tokens[kind, "revoked"] = daemon.ok("POST", f"/api/v1/users/{name}/tokens")["token"]
        daemon.ok("PATCH", f"/api/v1/users/{name}", {"revoke_tokens": True})
        tokens[kind, "right"] = daemon.ok("POST", f"/api/v1/users/{name}/tokens")["token"]
    daemon.ok("PATCH", "/api/v1/users/matrix-disabled", {"disabled": True})
    return tokens


@pytest.fixture(scope="module")
def ids(daemon: DaemonProcess, people: dict[tuple[str, str], str]) -> dict[str, str]:
    """A post, a post pending approval and an incident for the {id} routes to act on."""
    post = daemon.ok("POST", "/api/v1/posts", matrix.MARKETING_POST)
    pending = daemon.api("POST", "/api/v1/posts", {**matrix.MARKETING_POST,
                                                   "channel": "lib-review"},
                         token=people[matrix.AUTHOR, "right"]).json()
    assert pending["state"] == "pending_approval", pending
    incident = daemon.ok("POST", "/api/v1/incidents",
                         {"runbook": matrix.RUNBOOK, "title": "matrix fixture"})
    return {"post": str(post["id"]), "pending": str(pending["id"]),
            "incident": incident["id"], "person": matrix.AUTHOR}


def _request(daemon: DaemonProcess, endpoint: Endpoint, headers: dict[str, str],
             ids: dict[str, str]) -> requests.Response:
    kwargs: dict[str, Any] = {"headers": headers, "timeout": 30}
    if endpoint.body is not None:
        kwargs["json"] = endpoint.body
    return requests.request(endpoint.method, daemon.url + matrix.fill(endpoint.path, ids),
                            **kwargs)


CELLS = [pytest.param(e, role, cred, id=f"{e.label}-{role}-{cred}")
         for e in ENDPOINTS for role in ROLES for cred in CREDENTIALS]


@pytest.mark.parametrize(("endpoint", "role", "credential"), CELLS)
def test_api_matrix(daemon: DaemonProcess, ids: dict[str, str], endpoint: Endpoint, role: str,
                    credential: str) -> None:
    response = _request(daemon, endpoint, matrix.authorization(role, credential), ids)
    _check(response, matrix.expected_status(endpoint, role, credential))


PERSON_CELLS = [pytest.param(e, kind, cred, id=f"{e.label}-person-{kind}-{cred}")
                for e in ENDPOINTS for kind in PERSONS for cred in PERSON_CREDENTIALS]


@pytest.mark.parametrize(("endpoint", "kind", "credential"), PERSON_CELLS)
def test_person_matrix(daemon: DaemonProcess, ids: dict[str, str],
                       people: dict[tuple[str, str], str], endpoint: Endpoint, kind: str,
                       credential: str) -> None:
    token = {"none": None, "wrong": _altered(people[kind, "right"]),
             "revoked": people[kind, "revoked"], "right": people[kind, "right"]}[credential]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = _request(daemon, endpoint, headers, ids)
    expected = matrix.expected_person_status(endpoint, kind, credential)
    _check(response, expected)
    if expected == "403" and endpoint.team and endpoint.persons is None \
            and kind == "other-team-marketer":
        assert "libraries" in response.json()["error"]["message"], response.text


def _altered(token: str) -> str:
    return token[:-1] + ("x" if token[-1] != "x" else "y")


def _check(response: requests.Response, expected: str) -> None:
    seen = (response.status_code, response.text[:300])
    if expected == "ok":
        assert response.status_code not in (401, 403), seen
        assert response.status_code < 500, seen
    else:
        assert response.status_code == int(expected), seen
        code = {"401": "unauthorized", "403": "forbidden"}[expected]
        assert response.json()["error"]["code"] == code, seen


@pytest.mark.parametrize("header", [
    pytest.param(f"Basic {TOKENS['admin']}", id="basic-scheme"),
    pytest.param(TOKENS["admin"], id="no-scheme"),
    pytest.param("Bearer", id="scheme-only"),
    pytest.param("Bearer ", id="empty-token"),
    pytest.param(f"Bearer {TOKENS['feed']}", id="feed-token"),
    pytest.param(f"Bearer {TOKENS['admin']}{TOKENS['admin']}", id="token-twice"),
    pytest.param(f"Bearer {TOKENS['admin'][:-4]}", id="token-prefix"),
    pytest.param(f"Bearer {TOKENS['admin'].upper()}", id="token-upper-case"),
    pytest.param("Bearer 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                 id="a-sha256-hex"),
])
def test_malformed_or_borrowed_credentials_are_401(daemon: DaemonProcess, header: str) -> None:
    response = requests.get(daemon.url + "/api/v1/status", headers={"Authorization": header},
                            timeout=10)
    assert response.status_code == 401, response.text


def test_a_list_of_posts_is_refused_whole_when_one_needs_a_power_the_caller_lacks(
        daemon: DaemonProcess) -> None:
    text = "list-refused-whole"
    body = [{**matrix.MARKETING_POST, "text": text}, {**matrix.OPERATIONAL_POST, "text": text}]
    response = daemon.api("POST", "/api/v1/posts", body, role="marketing")
    assert response.status_code == 403, response.text
    assert "posts[1]" in response.json()["error"]["message"]
    stored = daemon.ok("GET", "/api/v1/posts")
    assert [p for p in stored if p["text"] == text] == []


def test_created_by_is_the_token_s_name_not_the_body_s(daemon: DaemonProcess) -> None:
    # An unknown field is refused, so a body cannot claim to be someone else.
    forged = {**matrix.MARKETING_POST, "created_by": "admin"}
    assert daemon.api("POST", "/api/v1/posts", forged, role="marketing").status_code == 400
    post = daemon.ok("POST", "/api/v1/posts", matrix.MARKETING_POST, role="marketing")
    assert post["created_by"] == "marketing"


# -- feeds -----------------------------------------------------------------------


def _feed_errors(daemon: DaemonProcess, feed: str, reason: str) -> float:
    return daemon.metric("switchboard_feed_errors_total", {"feed": feed, "reason": reason}) or 0.0


def _feed_error_total(daemon: DaemonProcess, feed: str) -> float:
    text = requests.get(daemon.url + "/metrics", timeout=10).text
    pattern = re.compile(rf'^switchboard_feed_errors_total{{[^}}]*feed="{re.escape(feed)}"'
                         rf'[^}}]*}} (\S+)$', re.M)
    return sum(float(v) for v in pattern.findall(text))


@pytest.mark.parametrize("case", [pytest.param(c, id=c.label) for c in FEED_CASES])
def test_feed_matrix(daemon: DaemonProcess, case: FeedCase) -> None:
    body = case.body()
    before = (_feed_errors(daemon, case.metric_feed, case.reason) if case.reason
              else _feed_error_total(daemon, case.metric_feed))
    response = requests.post(f"{daemon.url}/feeds/{case.feed}", data=body,
                             headers={"Content-Type": "application/json",
                                      **case.headers(body)}, timeout=30)
    assert response.status_code == case.status, response.text[:300]
    if case.reason is None:
        assert response.json()["accepted"] >= 1
        assert _feed_error_total(daemon, case.metric_feed) == before
    else:
        assert response.json()["error"]["code"] == case.code
        assert _feed_errors(daemon, case.metric_feed, case.reason) == before + 1


@pytest.mark.parametrize("kind", PERSONS)
def test_no_personal_token_opens_a_feed(daemon: DaemonProcess,
                                        people: dict[tuple[str, str], str], kind: str) -> None:
    body = matrix.alertmanager_body()
    for feed in ("am", "js"):
        response = requests.post(f"{daemon.url}/feeds/{feed}", data=body, timeout=30,
                                 headers={"Content-Type": "application/json",
                                          "Authorization": f"Bearer {people[kind, 'right']}"})
        assert response.status_code == 401, response.text


def test_a_scanner_cannot_grow_the_feed_error_labels(daemon: DaemonProcess) -> None:
    for name in ("scan-a", "scan-b", "..%2f..%2fetc"):
        requests.post(f"{daemon.url}/feeds/{name}", data=b"{}", timeout=10)
    text = requests.get(daemon.url + "/metrics", timeout=10).text
    feeds = set(re.findall(r'^switchboard_feed_errors_total{[^}]*feed="([^"]*)"', text, re.M))
    assert feeds <= {"am", "pd", "js", "poll", "unknown"}


# -- the matrix's own bookkeeping -------------------------------------------------


def test_every_served_route_is_in_the_matrix() -> None:
    stub = SimpleNamespace(config=SimpleNamespace(max_body_bytes=1),
                           limits=SimpleNamespace(body_timeout=1.0))
    api = Api(stub)  # type: ignore[arg-type]
    app = api.application()
    served = {(r.method, r.resource.canonical) for r in app.router.routes()
              if r.resource is not None}
    tested = {(e.method, re.sub(r"{(post|pending|incident)}", "{id}",
                                e.path.split("?")[0].replace("{person}", "{name}")))
              for e in ENDPOINTS}
    tested.add(("POST", "/feeds/{feed_id}"))
    assert served - tested == set(), "routes with no row in tests/security/matrix.py"
    assert tested - served == set(), "matrix rows for routes the daemon does not serve"


def test_the_doc_shows_the_tested_matrix() -> None:
    doc = (ROOT / "docs" / "reliability.md").read_text()
    assert matrix.render() in doc, ("docs/reliability.md is out of date: run "
                                    ".venv/bin/python -m tests.security.matrix --write "
                                    "docs/reliability.md")


# -- /metrics with its optional token ---------------------------------------------


def test_a_metrics_token_closes_metrics_only(tmp_path: Path) -> None:
    config = base_config(tmp_path, 0, metrics={"token_env": "SB_SEC_METRICS"})
    proc = DaemonProcess(tmp_path, config=config, env={"SB_SEC_METRICS": "metrics-scrape-tok"})
    proc.start()
    try:
        def get(path: str, token: str | None) -> int:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return requests.get(proc.url + path, headers=headers, timeout=10).status_code

        assert get("/metrics", None) == 401
        assert get("/metrics", "metrics-scrape-tok-wrong") == 401
        assert get("/metrics", TOKENS["admin"]) == 401  # an API token is not a scrape token
        assert get("/metrics", "metrics-scrape-tok") == 200
        assert get("/healthz", None) == 200
        assert get("/readyz", None) == 200
        # ... and the scrape token opens nothing else.
        assert get("/api/v1/status", "metrics-scrape-tok") == 401
    finally:
        proc.kill()
