"""The security matrix as data: what every caller may do on every endpoint.

`test_matrix.py` runs every row against one real daemon; the tables in
docs/reliability.md (## Security matrix) are rendered from the same data, and
a test checks that the doc shows exactly what is tested. To refresh the doc:

    .venv/bin/python -m tests.security.matrix --write docs/reliability.md
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.daemon import TOKENS
from tests.feeds.cases import fixture

ROLES = ("viewer", "marketing", "ops", "admin")
POSTERS = frozenset({"marketing", "ops", "admin"})  # may create some kind of post
MARKETING = frozenset({"marketing", "admin"})
OPS = frozenset({"ops", "admin"})
EVERYONE = frozenset(ROLES)
ADMIN = frozenset({"admin"})

# Feed secrets of the matrix daemon (besides TOKENS["feed"], the alertmanager token).
PD_SECRET = "pd-signing-secret-5f1c9a0e"
JSON_TOKEN = "json-feed-token-7d2e4b19"
JSON_SECRET = "json-hmac-secret-a83c6f20"
RUNBOOK = "sec-drill"
MAX_BODY = 1024 * 1024

MARKETING_POST = {"channel": "outbox", "kind": "marketing", "text": "matrix offer", "at": "+30d"}
OPERATIONAL_POST = {"channel": "outbox", "kind": "operational", "text": "matrix notice",
                    "at": "+30d"}


# People of the matrix daemon, by kind. The channel `outbox` belongs to team
# `libraries`; `parks` is another team; `lib-review` (libraries) needs approval.
PERSONS = ("viewer", "team-marketer", "other-team-marketer", "team-approver", "ops", "admin",
           "disabled")
PERSON_ROLE = {"viewer": "viewer", "team-marketer": "marketing",
               "other-team-marketer": "marketing", "team-approver": "marketing", "ops": "ops",
               "admin": "admin", "disabled": "marketing"}
PERSON_SETUP: dict[str, tuple[str, list[str]]] = {  # kind: (organisation role, team roles)
    "viewer": ("viewer", []),
    "team-marketer": ("viewer", ["libraries:marketing"]),
    "other-team-marketer": ("viewer", ["parks:marketing"]),
    "team-approver": ("viewer", ["libraries:approver"]),
    "ops": ("ops", []),
    "admin": ("admin", []),
    "disabled": ("viewer", ["libraries:marketing"]),
}
AUTHOR = "matrix-author"  # writes the pending post the approve/reject rows act on
PERSON_CREDENTIALS = ("none", "wrong", "revoked", "right")
TEAMS = [{"id": "libraries", "channels": ["outbox", "lib-review"]},
         {"id": "parks", "channels": ["parks-fb"]}]


@dataclass(frozen=True)
class Endpoint:
    """One API request; `allowed` None means open to anyone (no token needed).

    `team` marks requests on the libraries channel `outbox`: a person needs a
    marketing role in that team. `persons`, when given, lists the person kinds
    allowed instead of deriving them from `allowed`."""

    label: str
    method: str
    path: str  # {post}, {pending}, {incident} and {person} are filled in from the daemon
    body: Any
    allowed: frozenset[str] | None
    note: str = ""
    team: bool = False
    persons: frozenset[str] | None = None


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("GET /healthz", "GET", "/healthz", None, None),
    Endpoint("GET /readyz", "GET", "/readyz", None, None),
    Endpoint("GET /metrics", "GET", "/metrics", None, None),
    Endpoint("GET /api/v1/status", "GET", "/api/v1/status", None, EVERYONE),
    Endpoint("GET /api/v1/channels", "GET", "/api/v1/channels", None, EVERYONE),
    Endpoint("GET /api/v1/posts", "GET", "/api/v1/posts?state=scheduled", None, EVERYONE),
    Endpoint("POST /api/v1/posts (marketing post)", "POST", "/api/v1/posts", MARKETING_POST,
             MARKETING, team=True),
    Endpoint("POST /api/v1/posts (operational post)", "POST", "/api/v1/posts",
             OPERATIONAL_POST, OPS),
    Endpoint("POST /api/v1/posts (list of both kinds)", "POST", "/api/v1/posts",
             [MARKETING_POST, OPERATIONAL_POST], frozenset({"admin"})),
    Endpoint("POST /api/v1/posts (dummy body `{}`)", "POST", "/api/v1/posts", {}, POSTERS,
             note="S1"),
    Endpoint("POST /api/v1/posts/import (dummy body `{}`)", "POST", "/api/v1/posts/import",
             {}, POSTERS, note="S1"),
    Endpoint("GET /api/v1/posts/{id}", "GET", "/api/v1/posts/{post}", None, EVERYONE),
    Endpoint("POST /api/v1/posts/{id}/cancel", "POST", "/api/v1/posts/{post}/cancel", None,
             MARKETING, team=True),
    Endpoint("POST /api/v1/posts/{id}/release", "POST", "/api/v1/posts/{post}/release", None,
             MARKETING, team=True),
    Endpoint("POST /api/v1/posts/{id}/drop", "POST", "/api/v1/posts/{post}/drop", None,
             MARKETING, team=True),
    Endpoint("PATCH /api/v1/posts/{id}", "PATCH", "/api/v1/posts/{post}",
             {"text": "matrix edit"}, MARKETING, team=True),
    Endpoint("POST /api/v1/posts/actions", "POST", "/api/v1/posts/actions",
             {"action": "cancel", "ids": [999999]}, MARKETING),
    Endpoint("POST /api/v1/send (marketing)", "POST", "/api/v1/send",
             {"channel": "outbox", "kind": "marketing", "text": "matrix send"}, MARKETING,
             team=True),
    Endpoint("POST /api/v1/send (operational)", "POST", "/api/v1/send",
             {"channel": "outbox", "kind": "operational", "text": "matrix update"}, OPS),
    Endpoint("POST /api/v1/send (dummy body `{}`)", "POST", "/api/v1/send", {}, POSTERS,
             note="S1"),
    Endpoint("GET /api/v1/incidents", "GET", "/api/v1/incidents?all=true", None, EVERYONE),
    Endpoint("POST /api/v1/incidents", "POST", "/api/v1/incidents",
             {"runbook": RUNBOOK, "title": "matrix drill"}, OPS),
    Endpoint("GET /api/v1/incidents/{id}", "GET", "/api/v1/incidents/{incident}", None,
             EVERYONE),
    Endpoint("POST /api/v1/incidents/{id}/update", "POST", "/api/v1/incidents/{incident}/update",
             {"text": "matrix update"}, OPS),
    Endpoint("POST /api/v1/incidents/{id}/resolve", "POST",
             "/api/v1/incidents/{incident}/resolve", {}, OPS),
    Endpoint("POST /api/v1/incidents/{id}/void (dummy body `{}`)", "POST",
             "/api/v1/incidents/{incident}/void", {}, OPS),
    Endpoint("POST /api/v1/incidents/{id}/release (dummy body `{}`)", "POST",
             "/api/v1/incidents/{incident}/release", {}, OPS),
    Endpoint("POST /api/v1/posts/{id}/approve", "POST", "/api/v1/posts/{pending}/approve", {},
             ADMIN, persons=frozenset({"team-approver", "admin"})),
    Endpoint("POST /api/v1/posts/{id}/reject", "POST", "/api/v1/posts/{pending}/reject",
             {"reason": "matrix"}, ADMIN, persons=frozenset({"team-approver", "admin"})),
    Endpoint("GET /api/v1/users", "GET", "/api/v1/users", None, ADMIN),
    Endpoint("POST /api/v1/users (dummy body `{}`)", "POST", "/api/v1/users", {}, ADMIN),
    Endpoint("PATCH /api/v1/users/{name}", "PATCH", "/api/v1/users/{person}", {}, ADMIN),
    Endpoint("POST /api/v1/users/{name}/tokens", "POST", "/api/v1/users/{person}/tokens",
             None, ADMIN),
    Endpoint("GET /api/v1/audit", "GET", "/api/v1/audit", None, ADMIN,
             persons=frozenset({"team-approver", "admin"})),
    Endpoint("POST /api/v1/session (dummy body `{}`)", "POST", "/api/v1/session", {}, None),
    Endpoint("GET /api/v1/feeds", "GET", "/api/v1/feeds", None, EVERYONE),
)

# How a caller presents itself: no header, a wrong token, or the role's own token.
CREDENTIALS = ("none", "wrong", "right")


def wrong_token(role: str) -> str:
    """The role's token with its last character changed: as close as a guess gets."""
    token = TOKENS[role]
    return token[:-1] + ("x" if token[-1] != "x" else "y")


def authorization(role: str, credential: str) -> dict[str, str]:
    if credential == "none":
        return {}
    token = TOKENS[role] if credential == "right" else wrong_token(role)
    return {"Authorization": f"Bearer {token}"}


def expected_status(endpoint: Endpoint, role: str, credential: str) -> str:
    """'401', '403' or 'ok' (anything but 401/403: the body may still be refused)."""
    if endpoint.allowed is None:
        return "ok"
    if credential != "right":
        return "401"
    return "ok" if role in endpoint.allowed else "403"


def expected_person_status(endpoint: Endpoint, kind: str, credential: str) -> str:
    """'401', '403' or 'ok' for a person of `kind` presenting `credential`."""
    if endpoint.allowed is None:
        return "ok"
    if credential != "right" or kind == "disabled":
        return "401"  # a disabled person's tokens stop at once
    if endpoint.persons is not None:
        return "ok" if kind in endpoint.persons else "403"
    if PERSON_ROLE[kind] not in endpoint.allowed:
        return "403"
    if endpoint.team and kind == "other-team-marketer":
        return "403"  # another team's channel
    return "ok"


# -- feeds ---------------------------------------------------------------------

Headers = Callable[[bytes], dict[str, str]]


def bearer(token: str) -> Headers:
    return lambda body: {"Authorization": f"Bearer {token}"}


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def pd_signature(secret: str, prefix: str = "v1=", extra: str = "") -> Headers:
    return lambda body: {"X-PagerDuty-Signature": extra + prefix + sign(secret, body)}


def json_auth(token: str | None, secret: str | None, prefix: str = "") -> Headers:
    def headers(body: bytes) -> dict[str, str]:
        out = {}
        if token is not None:
            out["Authorization"] = f"Bearer {token}"
        if secret is not None:
            out["X-Signature"] = prefix + sign(secret, body)
        return out
    return headers


def no_headers(body: bytes) -> dict[str, str]:
    return {}


def alertmanager_body() -> bytes:
    return fixture("alertmanager-v4-firing.json")


def pagerduty_body() -> bytes:
    return fixture("pagerduty-v3-incident-triggered.json")


def json_body() -> bytes:
    return json.dumps({"id": "matrix-1", "state": "firing", "name": "matrix"}).encode()


def oversized(body: bytes) -> bytes:
    """The feed's own payload padded with JSON whitespace to one byte over the limit."""
    return body + b" " * (MAX_BODY + 1 - len(body))


def at_limit(body: bytes) -> bytes:
    return body + b" " * (MAX_BODY - len(body))


@dataclass(frozen=True)
class FeedCase:
    label: str
    feed: str  # the id in the URL
    headers: Headers
    status: int
    reason: str | None  # the feed_errors_total reason counted, None when accepted
    body: Callable[[], bytes]
    counted_as: str = ""  # the feed label of the error counter, default `feed`

    @property
    def metric_feed(self) -> str:
        return self.counted_as or self.feed

    @property
    def code(self) -> str | None:
        """The error code in the JSON answer: the counted reason, but 404 says not_found."""
        return "not_found" if self.reason == "unknown_feed" else self.reason


def _feed_cases() -> tuple[FeedCase, ...]:
    am, pd, js = alertmanager_body, pagerduty_body, json_body
    cases = [
        FeedCase("alertmanager: no token", "am", no_headers, 401, "unauthorized", am),
        FeedCase("alertmanager: wrong token", "am", bearer(TOKENS["feed"] + "x"), 401,
                 "unauthorized", am),
        FeedCase("alertmanager: feed token without `Bearer`", "am",
                 lambda body: {"Authorization": TOKENS["feed"]}, 401, "unauthorized", am),
        FeedCase("alertmanager: another feed's token", "am", bearer(JSON_TOKEN), 401,
                 "unauthorized", am),
        *(FeedCase(f"alertmanager: the {role} API token", "am", bearer(TOKENS[role]), 401,
                   "unauthorized", am) for role in ROLES),
        FeedCase("alertmanager: right token", "am", bearer(TOKENS["feed"]), 202, None, am),
        FeedCase("alertmanager: right token, body at the 1 MiB limit", "am",
                 bearer(TOKENS["feed"]), 202, None, lambda: at_limit(am())),
        FeedCase("alertmanager: right token, body over 1 MiB", "am", bearer(TOKENS["feed"]),
                 413, "too_large", lambda: oversized(am())),
        FeedCase("pagerduty: no signature", "pd", no_headers, 401, "unauthorized", pd),
        FeedCase("pagerduty: wrong signature", "pd",
                 lambda body: {"X-PagerDuty-Signature": "v1=" + "0" * 64}, 401,
                 "unauthorized", pd),
        FeedCase("pagerduty: signed with another secret", "pd", pd_signature(JSON_SECRET), 401,
                 "unauthorized", pd),
        FeedCase("pagerduty: signature of another body", "pd",
                 lambda body: pd_signature(PD_SECRET)(body + b" "), 401, "unauthorized", pd),
        FeedCase("pagerduty: right digest without `v1=`", "pd", pd_signature(PD_SECRET, ""),
                 401, "unauthorized", pd),
        FeedCase("pagerduty: the alertmanager feed token", "pd", bearer(TOKENS["feed"]), 401,
                 "unauthorized", pd),
        FeedCase("pagerduty: the admin API token", "pd", bearer(TOKENS["admin"]), 401,
                 "unauthorized", pd),
        FeedCase("pagerduty: right signature", "pd", pd_signature(PD_SECRET), 202, None, pd),
        FeedCase("pagerduty: right signature among several (rotation)", "pd",
                 pd_signature(PD_SECRET, extra="v1=" + "0" * 64 + ","), 202, None, pd),
        FeedCase("pagerduty: right signature, body over 1 MiB", "pd", pd_signature(PD_SECRET),
                 413, "too_large", lambda: oversized(pd())),
        FeedCase("json (token and HMAC): nothing", "js", no_headers, 401, "unauthorized", js),
        FeedCase("json (token and HMAC): right token only", "js", json_auth(JSON_TOKEN, None),
                 401, "unauthorized", js),
        FeedCase("json (token and HMAC): right signature only", "js",
                 json_auth(None, JSON_SECRET), 401, "unauthorized", js),
        FeedCase("json (token and HMAC): right token, wrong signature", "js",
                 json_auth(JSON_TOKEN, PD_SECRET), 401, "unauthorized", js),
        FeedCase("json (token and HMAC): admin API token, right signature", "js",
                 json_auth(TOKENS["admin"], JSON_SECRET), 401, "unauthorized", js),
        FeedCase("json (token and HMAC): right token and signature", "js",
                 json_auth(JSON_TOKEN, JSON_SECRET), 202, None, js),
        FeedCase("json (token and HMAC): right token and `sha256=` signature", "js",
                 json_auth(JSON_TOKEN, JSON_SECRET, "sha256="), 202, None, js),
        FeedCase("json (token and HMAC): right token and signature, body over 1 MiB", "js",
                 json_auth(JSON_TOKEN, JSON_SECRET), 413, "too_large",
                 lambda: oversized(js())),
        FeedCase("polled feed (cap): any delivery", "poll", bearer(TOKENS["admin"]), 405,
                 "unsupported", am),
        FeedCase("unknown feed: no token", "nope", no_headers, 404, "unknown_feed", am,
                 counted_as="unknown"),
        FeedCase("unknown feed: the alertmanager feed token", "nope", bearer(TOKENS["feed"]),
                 404, "unknown_feed", am, counted_as="unknown"),
        # Refused from the headers: the oversized body is never read.
        FeedCase("unknown feed: body over 1 MiB", "nope", no_headers, 404, "unknown_feed",
                 lambda: oversized(am()), counted_as="unknown"),
        FeedCase("alertmanager: no token, body over 1 MiB", "am", no_headers, 401,
                 "unauthorized", lambda: oversized(am())),
        FeedCase("pagerduty: no signature, body over 1 MiB", "pd", no_headers, 401,
                 "unauthorized", lambda: oversized(pd())),
    ]
    return tuple(cases)


FEED_CASES = _feed_cases()


def feed_config(poll_url: str) -> list[dict[str, Any]]:
    """The matrix daemon's feeds (env: SB_TEST_FEED, SB_SEC_PD_SECRET, SB_SEC_JSON_*)."""
    return [
        {"id": "am", "kind": "alertmanager", "token_env": "SB_TEST_FEED"},
        {"id": "pd", "kind": "pagerduty", "secret_env": "SB_SEC_PD_SECRET"},
        {"id": "js", "kind": "json", "token_env": "SB_SEC_JSON_TOKEN",
         "secret_env": "SB_SEC_JSON_SECRET",
         "fields": {"key": "id", "status": "state", "title": "name"}},
        {"id": "poll", "kind": "cap", "url": poll_url, "every": "1h"},
    ]


FEED_ENV = {"SB_SEC_PD_SECRET": PD_SECRET, "SB_SEC_JSON_TOKEN": JSON_TOKEN,
            "SB_SEC_JSON_SECRET": JSON_SECRET}


# -- the doc ---------------------------------------------------------------------

START = "<!-- security-matrix:start (generated by python -m tests.security.matrix) -->"
END = "<!-- security-matrix:end -->"
_CELL = {"ok": "allowed", "401": "401", "403": "403"}


def _api_row(endpoint: Endpoint) -> str:
    if endpoint.allowed is None:
        cells = ["open"] * (2 + len(ROLES))
    else:
        cells = [_CELL[expected_status(endpoint, ROLES[0], c)] for c in ("none", "wrong")]
        cells += [_CELL[expected_status(endpoint, role, "right")] for role in ROLES]
    label = endpoint.label + (f" ({endpoint.note})" if endpoint.note else "")
    return f"| {label} | " + " | ".join(cells) + " |"


def _person_row(endpoint: Endpoint) -> str:
    if endpoint.allowed is None:
        cells = ["open"] * (3 + len(PERSONS) - 1)
    else:
        cells = [_CELL[expected_person_status(endpoint, "admin", c)]
                 for c in ("none", "wrong", "revoked")]
        cells += [_CELL[expected_person_status(endpoint, kind, "right")]
                  for kind in PERSONS if kind != "disabled"]
    return f"| {endpoint.label} | " + " | ".join(cells) + " |"


def render() -> str:
    api = ["| request | no token | wrong token | " + " | ".join(ROLES) + " |",
           "|---|" + "---|" * (2 + len(ROLES))]
    api += [_api_row(e) for e in ENDPOINTS]
    kinds = [k for k in PERSONS if k != "disabled"]
    api += ["", "People (personal tokens; `outbox` belongs to team libraries; a disabled "
            "person's right token is 401 everywhere):", "",
            "| request | no token | wrong token | revoked token | " + " | ".join(kinds) + " |",
            "|---|" + "---|" * (3 + len(kinds))]
    api += [_person_row(e) for e in ENDPOINTS]
    feeds = ["| delivery | status | counted in `switchboard_feed_errors_total` |",
             "|---|---|---|"]
    for case in FEED_CASES:
        counted = (f'`{{feed="{case.metric_feed}",reason="{case.reason}"}}`'
                   if case.reason else "no error")
        feeds.append(f"| {case.label} | {case.status} | {counted} |")
    return "\n".join([START, "", *api, "", *feeds, "", END])


def cell_count() -> int:
    """Requests in the API matrix: endpoints x (roles x credentials + people x credentials)."""
    return len(ENDPOINTS) * (len(ROLES) * len(CREDENTIALS)
                             + len(PERSONS) * len(PERSON_CREDENTIALS))


def write(doc: Path) -> None:
    text = doc.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    if not rest:
        raise SystemExit(f"{doc}: no {START!r} marker")
    doc.write_text(head + render() + tail)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--write"] and len(argv) == 2:
        write(Path(argv[1]))
    else:
        print(render())
    return 0


def fill(path: str, ids: Mapping[str, str]) -> str:
    return path.format(**ids)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
