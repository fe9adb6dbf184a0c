"""A fake Graph API for one Facebook Page (feed, posts, delete), for aiohttp clients.

    with FakeFacebook() as fb:
        config = ChannelConfig(..., options={"api_url": fb.url, "page_id": fb.page_id},
                               secrets={"page_token": fb.page_token})
        fb.usage = 90           # X-Page-Usage call_count on every answer
        fb.script(Fail(500), RateLimit(None))

The shapes follow the Graph API documentation:
- `POST /{page-id}/feed` with `message` (and `link`) publishes and answers
  `{"id": "{page-id}_{post-id}"}` (https://developers.facebook.com/docs/pages-api/posts);
  `GET /{page-id}/posts?fields=id,message,created_time` lists the Page's posts,
  newest first, as `{"data": [...], "paging": {...}}`; `DELETE /{post-id}` answers
  `{"success": true}`.
- Errors are `{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}`
  (https://developers.facebook.com/docs/graph-api/guides/error-handling): 190 an
  invalid or expired access token (`OAuthException`, subcode 463 expired), 200 a
  missing permission, 100 an invalid parameter (subcode 33: the object does not
  exist), 506 a duplicate status message, 2 a temporary service problem
  (`is_transient: true`).
- Throttling (https://developers.facebook.com/docs/graph-api/overview/rate-limiting):
  HTTP 400 with code 80001 ("There have been too many calls to this Page
  account") for Page tokens, which fall under Business Use Case limits, and the
  `X-Business-Use-Case-Usage` header `{"<page-id>": [{"type": "pages", "call_count",
  "total_cputime", "total_time", "estimated_time_to_regain_access"}]}` with the
  time in whole minutes; `X-App-Usage` / `X-Page-Usage` carry
  `{"call_count", "total_cputime", "total_time"}` in percent.

Only the posting calls (POST feed, DELETE) take scripted steps; the reads a
client makes to check what an unanswered attempt did answer normally.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlsplit

from tests.fakes.server import Answer, FakeServer, Request

_POST = re.compile(r"^/v[0-9.]+/(?P<id>[0-9]+_[0-9]+)$")
_FEED = re.compile(r"^/v[0-9.]+/(?P<page>[0-9]+)/feed$")
_POSTS = re.compile(r"^/v[0-9.]+/(?P<page>[0-9]+)/posts$")


@dataclass
class PagePost:
    id: str
    message: str
    link: str | None
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    deleted: bool = False

    @property
    def text(self) -> str:
        return self.message


class FakeFacebook(FakeServer):
    def __init__(self, page_id: str = "104200000000001",
                 page_token: str = "EAAfakepagetoken") -> None:
        super().__init__()
        self.page_id = page_id
        self.page_token = page_token
        self.posts: list[PagePost] = []  # every post made, deleted ones included
        self.usage = 0  # percent reported in X-Page-Usage on every answer
        self._ids = itertools.count(800000000000001)
        self._trace = itertools.count(1)

    @property
    def live(self) -> list[PagePost]:
        with self._lock:
            return [p for p in self.posts if not p.deleted]

    @property
    def texts(self) -> list[str]:
        return [p.message for p in self.live]

    def scripted(self, method: str, path: str) -> bool:
        return method in ("POST", "DELETE")

    # -- the Graph API ---------------------------------------------------------

    def route(self, request: Request) -> Answer:
        if request.header("Authorization") != f"Bearer {self.page_token}":
            return self.error(401)
        path = urlsplit(request.path).path
        feed = _FEED.match(path)
        if request.method == "POST" and feed and feed["page"] == self.page_id:
            return self._publish(request)
        posts = _POSTS.match(path)
        if request.method == "GET" and posts and posts["page"] == self.page_id:
            return self._list(request)
        post = _POST.match(path)
        if request.method == "DELETE" and post:
            return self._delete(post["id"])
        return self._graph_error(400, "Unknown path components", "OAuthException", 2500)

    def error(self, status: int, message: str | None = None) -> Answer:
        if status == 401:
            return self._graph_error(status, message or
                                     "Error validating access token: Session has expired",
                                     "OAuthException", 190, 463)
        if status == 403:
            return self._graph_error(403, message or "(#200) The user hasn't authorized the "
                                     "application to perform this action", "OAuthException",
                                     200)
        if status >= 500:
            return self._graph_error(status, message or "An unexpected error has occurred. "
                                     "Please retry your request later.", "OAuthException", 2,
                                     transient=True)
        return self._graph_error(status, message or "(#100) Invalid parameter",
                                 "OAuthException", 100)

    def rate_limited(self, reset_at: float | None) -> Answer:
        regain = 0 if reset_at is None else max(1, math.ceil((reset_at - time.time()) / 60))
        usage = {self.page_id: [{"type": "pages", "call_count": 100, "total_cputime": 12,
                                 "total_time": 14, "estimated_time_to_regain_access": regain}]}
        answer = self._graph_error(400, "(#80001) There have been too many calls to this Page "
                                   "account. Wait a bit and try again.", "OAuthException", 80001)
        return Answer(answer.status, answer.body,
                      {**answer.headers, "X-Business-Use-Case-Usage": json.dumps(usage)})

    def _graph_error(self, status: int, message: str, kind: str, code: int,
                     subcode: int | None = None, transient: bool = False) -> Answer:
        error: dict[str, object] = {"message": message, "type": kind, "code": code,
                                    "fbtrace_id": f"AfakeTrace{next(self._trace)}"}
        if subcode is not None:
            error["error_subcode"] = subcode
        if transient:
            error["is_transient"] = True
        return Answer(status, {"error": error}, self._usage_headers())

    def _usage_headers(self) -> dict[str, str]:
        usage = {"call_count": self.usage, "total_cputime": 1, "total_time": 1}
        return {"X-Page-Usage": json.dumps(usage),
                "X-App-Usage": json.dumps({"call_count": 1, "total_cputime": 1,
                                           "total_time": 1})}

    def _publish(self, request: Request) -> Answer:
        fields = request.fields()
        message, link = str(fields.get("message") or ""), fields.get("link")
        if not message.strip() and not link:
            return self._graph_error(400, "(#100) Missing message or attachment",
                                     "OAuthException", 100)
        last = next((p for p in reversed(self.posts) if not p.deleted), None)
        if last is not None and last.message == message and last.link == link:
            return self._graph_error(400, "Duplicate status message", "OAuthException", 506,
                                     1455006)
        post = PagePost(id=f"{self.page_id}_{next(self._ids)}", message=message,
                        link=str(link) if link else None)
        self.posts.append(post)
        return Answer(200, {"id": post.id}, self._usage_headers())

    def _list(self, request: Request) -> Answer:
        query = dict(parse_qsl(urlsplit(request.path).query))
        limit = int(query.get("limit", "25"))
        newest = [p for p in reversed(self.posts) if not p.deleted][:limit]
        data = [{"id": p.id, "message": p.message,
                 "created_time": p.created.strftime("%Y-%m-%dT%H:%M:%S+0000")} for p in newest]
        return Answer(200, {"data": data, "paging": {}}, self._usage_headers())

    def _delete(self, post_id: str) -> Answer:
        post = next((p for p in self.posts if p.id == post_id and not p.deleted), None)
        if post is None:
            return self._graph_error(400, f"Unsupported delete request. Object with ID "
                                     f"'{post_id}' does not exist", "GraphMethodException",
                                     100, 33)
        post.deleted = True
        return Answer(200, {"success": True}, self._usage_headers())
