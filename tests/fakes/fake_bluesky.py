"""A fake atproto PDS (sessions, putRecord, deleteRecord), for the real atproto SDK.

    with FakeBluesky() as pds:
        config = ChannelConfig(..., options={"service": pds.url, "identifier": pds.handle},
                               secrets={"app_password": pds.app_password})
        pds.script(RateLimit(time.time() + 1.5), Fail(503))

The shapes follow the documented XRPC endpoints:
- `com.atproto.server.createSession` / `refreshSession`
  (https://docs.bsky.app/docs/api/com-atproto-server-create-session): `{identifier,
  password}` in, `{accessJwt, refreshJwt, handle, did, active}` out; a wrong password
  is 401 `AuthenticationRequired` "Invalid identifier or password".
- `com.atproto.repo.putRecord` (https://docs.bsky.app/docs/api/com-atproto-repo-put-record):
  `{repo, collection, rkey, record}` in, `{uri, cid, commit: {cid, rev},
  validationStatus}` out; writing the same record again under the same key changes
  nothing (the PDS keeps one record per key). `deleteRecord` succeeds for a record
  already gone.
- Errors are XRPC error bodies `{"error": Name, "message": text}`
  (https://atproto.com/specs/xrpc#error-responses): 400 `InvalidRequest` for a post
  text over 300 graphemes ("Record/text must not be longer than 300 graphemes", the
  lexicon's `maxGraphemes`), 400 `ExpiredToken` "Token has expired" for an expired
  access token, 401 `AuthenticationRequired` without one.
- Rate limits (https://docs.bsky.app/docs/advanced-guides/rate-limits): 429
  `RateLimitExceeded` with `RateLimit-Limit`, `RateLimit-Remaining`,
  `RateLimit-Reset` (Unix seconds) and `RateLimit-Policy` headers, which every
  answer also carries.

Only the posting calls (putRecord, deleteRecord) take scripted steps; logins answer
normally so a script means the same whatever the session does.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

import regex

from tests.fakes.server import Answer, FakeServer, Request

POST = "app.bsky.feed.post"
_TID = re.compile(r"^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$")
_SESSION_CALLS = ("/xrpc/com.atproto.server.createSession",
                  "/xrpc/com.atproto.server.refreshSession")


@dataclass
class Record:
    uri: str
    rkey: str
    value: dict[str, Any]
    cid: str
    writes: int = 1
    deleted: bool = False

    @property
    def text(self) -> str:
        return str(self.value.get("text", ""))


@dataclass
class Limits:
    limit: int = 3000
    remaining: int = 3000
    reset_at: float = field(default_factory=lambda: time.time() + 300)


class FakeBluesky(FakeServer):
    def __init__(self, handle: str = "council.example.org",
                 app_password: str = "abcd-efgh-ijkl-mnop") -> None:
        super().__init__()
        self.handle = handle
        self.app_password = app_password
        self.did = "did:plc:fakecouncil0000000000000"
        self.records: list[Record] = []  # every post record created, deleted ones included
        self.logins = 0
        self.window = Limits()  # the account's rate-limit window
        self._access: dict[str, float] = {}   # access token -> expiry (Unix time)
        self._refresh: set[str] = set()
        self._serial = itertools.count(1)

    # -- what tests read and do ------------------------------------------------

    @property
    def live(self) -> list[Record]:
        with self._lock:
            return [r for r in self.records if not r.deleted]

    @property
    def texts(self) -> list[str]:
        return [r.text for r in self.live]

    def expire_sessions(self) -> None:
        """Every access token issued so far counts as expired from now on."""
        with self._lock:
            self._access = dict.fromkeys(self._access, 0.0)

    def scripted(self, method: str, path: str) -> bool:
        return path.split("?")[0] not in _SESSION_CALLS

    # -- the PDS ---------------------------------------------------------------

    def route(self, request: Request) -> Answer:
        path = request.path.split("?")[0]
        if request.method == "POST" and path == _SESSION_CALLS[0]:
            return self._create_session(request)
        if request.method == "POST" and path == _SESSION_CALLS[1]:
            return self._refresh_session(request)
        refused = self._check_access(request)
        if refused is not None:
            return refused
        if request.method == "POST" and path == "/xrpc/com.atproto.repo.putRecord":
            return self._put(request.json() or {})
        if request.method == "POST" and path == "/xrpc/com.atproto.repo.deleteRecord":
            return self._delete(request.json() or {})
        return self._xrpc_error(501, "MethodNotImplemented", "Method Not Implemented")

    def error(self, status: int, message: str | None = None) -> Answer:
        names = {400: "InvalidRequest", 401: "AuthenticationRequired", 403: "Forbidden",
                 500: "InternalServerError", 502: "UpstreamFailure", 503: "NotEnoughResources",
                 504: "UpstreamTimeout"}
        return self._xrpc_error(status, names.get(status, "InternalServerError"),
                                message or f"Error {status}")

    def rate_limited(self, reset_at: float | None) -> Answer:
        headers = {"RateLimit-Limit": str(self.window.limit), "RateLimit-Remaining": "0",
                   "RateLimit-Policy": f"{self.window.limit};w=300"}
        if reset_at is not None:
            # Whole Unix seconds, rounded up: never a time before the one asked for.
            headers["RateLimit-Reset"] = str(math.ceil(reset_at))
        return Answer(429, {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"},
                      headers)

    def _xrpc_error(self, status: int, name: str, message: str) -> Answer:
        return Answer(status, {"error": name, "message": message}, self._limit_headers())

    def _limit_headers(self) -> dict[str, str]:
        limits = self.window
        return {"RateLimit-Limit": str(limits.limit),
                "RateLimit-Remaining": str(max(0, limits.remaining)),
                "RateLimit-Reset": str(math.ceil(limits.reset_at)),
                "RateLimit-Policy": f"{limits.limit};w=300"}

    def _ok(self, body: dict[str, Any]) -> Answer:
        self.window.remaining -= 1
        return Answer(200, body, self._limit_headers())

    def _create_session(self, request: Request) -> Answer:
        body = request.json() or {}
        if body.get("identifier") not in (self.handle, self.did) or \
                body.get("password") != self.app_password:
            return self._xrpc_error(401, "AuthenticationRequired",
                                    "Invalid identifier or password")
        self.logins += 1
        return self._ok(self._session())

    def _refresh_session(self, request: Request) -> Answer:
        token = (request.header("Authorization") or "").removeprefix("Bearer ")
        if token not in self._refresh:
            return self._xrpc_error(400, "ExpiredToken", "Token has been revoked")
        self._refresh.discard(token)
        return self._ok(self._session())

    def _session(self) -> dict[str, Any]:
        now = int(time.time())
        access = _jwt({"scope": "com.atproto.appPass", "sub": self.did, "iat": now,
                       "exp": now + 7200, "aud": "did:web:fake.pds", "n": next(self._serial)})
        refresh = _jwt({"scope": "com.atproto.refresh", "sub": self.did, "iat": now,
                        "exp": now + 90 * 86400, "jti": str(next(self._serial))})
        self._access[access] = now + 7200
        self._refresh.add(refresh)
        return {"accessJwt": access, "refreshJwt": refresh, "handle": self.handle,
                "did": self.did, "active": True}

    def _check_access(self, request: Request) -> Answer | None:
        token = (request.header("Authorization") or "").removeprefix("Bearer ")
        expiry = self._access.get(token)
        if expiry is None:
            return self._xrpc_error(401, "AuthenticationRequired", "Authentication Required")
        if expiry <= time.time():
            return self._xrpc_error(400, "ExpiredToken", "Token has expired")
        return None

    def _put(self, body: dict[str, Any]) -> Answer:
        repo, collection, rkey = body.get("repo"), body.get("collection"), body.get("rkey")
        value = body.get("record")
        if repo not in (self.did, self.handle):
            return self._xrpc_error(400, "InvalidRequest", f"Could not find repo: {repo}")
        if collection != POST or not isinstance(value, dict) or not isinstance(rkey, str):
            return self._xrpc_error(400, "InvalidRequest", "Invalid record")
        if not _TID.match(rkey):
            return self._xrpc_error(400, "InvalidRequest", f"Invalid record key: {rkey}")
        text = value.get("text")
        if not isinstance(text, str) or not isinstance(value.get("createdAt"), str):
            return self._xrpc_error(400, "InvalidRequest",
                                    f"Invalid {POST} record: Record must have the property "
                                    "\"text\" and \"createdAt\"")
        if len(regex.findall(r"\X", text)) > 300:
            return self._xrpc_error(400, "InvalidRequest",
                                    f"Invalid {POST} record: Record/text must not be longer "
                                    "than 300 graphemes")
        uri = f"at://{self.did}/{POST}/{rkey}"
        cid = "bafyrei" + hashlib.sha256(json.dumps(value, sort_keys=True).encode()
                                         ).hexdigest()[:52]
        record = next((r for r in self.records if r.rkey == rkey and not r.deleted), None)
        if record is None:
            record = Record(uri=uri, rkey=rkey, value=value, cid=cid)
            self.records.append(record)
        else:
            record.value, record.cid = value, cid
            record.writes += 1
        return self._ok({"uri": uri, "cid": cid, "validationStatus": "valid",
                         "commit": {"cid": cid, "rev": f"3l{next(self._serial):011d}"}})

    def _delete(self, body: dict[str, Any]) -> Answer:
        for record in self.records:
            if record.rkey == body.get("rkey") and not record.deleted:
                record.deleted = True
        return self._ok({"commit": {"cid": "bafyreidelete", "rev": f"3l{next(self._serial):011d}"}})


def _jwt(payload: dict[str, Any]) -> str:
    """A JWT the SDK can read (it decodes the payload for `exp`; nobody checks the
    signature here)."""
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{part({'alg': 'HS256', 'typ': 'at+jwt'})}.{part(payload)}.ZmFrZQ"
