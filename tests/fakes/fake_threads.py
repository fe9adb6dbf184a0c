"""A fake Threads API for one profile (containers, publish, quota, delete), for aiohttp.

    with FakeThreads() as th:
        config = ChannelConfig(..., options={"api_url": th.url, "user_id": th.user_id},
                               secrets={"access_token": th.access_token})
        th.quota_usage = 250    # the 24-hour allowance is used up

The shapes follow the Threads API documentation
(https://developers.facebook.com/docs/threads/posts,
https://developers.facebook.com/docs/threads/troubleshooting,
https://developers.facebook.com/docs/threads/overview#rate-limiting):
- `POST /{user-id}/threads` with `media_type=TEXT&text=...` makes a container,
  `{"id": container}`; text is limited to 500 characters, emoji counted as their
  UTF-8 bytes;
- `POST /{user-id}/threads_publish` with `creation_id` publishes it, `{"id": media}`;
  publishing a container twice is refused (code 24, subcode 4279009: the media
  has been published already);
- `GET /{container-id}?fields=status` answers `{"status": "FINISHED" | "PUBLISHED"
  | "EXPIRED" | "ERROR" | "IN_PROGRESS", "id"}`;
- `GET /{user-id}/threads_publishing_limit?fields=quota_usage,config` answers
  `{"data": [{"quota_usage": n, "config": {"quota_total": 250, "quota_duration":
  86400}}]}`; publishing over it is refused with code 4;
- `GET /{user-id}/threads?fields=id,text,timestamp` lists the latest posts;
  `DELETE /{media-id}` answers `{"success": true}`;
- errors have the Graph shape `{"error": {"message", "type", "code",
  "error_subcode", "fbtrace_id"}}`, 190 for an expired token.

Only the publish and delete calls take scripted steps.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import regex

from tests.fakes.server import Answer, FakeServer, Request

_EMOJI = regex.compile(r"\p{Extended_Pictographic}|\p{Regional_Indicator}")


@dataclass
class Container:
    id: str
    text: str
    status: str = "FINISHED"
    media_id: str | None = None


@dataclass
class ThreadsPost:
    id: str
    text: str
    deleted: bool = False


def threads_length(text: str) -> int:
    return sum(len(c.encode()) if _EMOJI.search(c) else len(c)
               for c in regex.findall(r"\X", text))


class FakeThreads(FakeServer):
    def __init__(self, user_id: str = "17841400000000001",
                 access_token: str = "THAAfakethreadstoken") -> None:
        super().__init__()
        self.user_id = user_id
        self.access_token = access_token
        self.containers: dict[str, Container] = {}
        self.posts: list[ThreadsPost] = []  # every post published, deleted ones included
        self.quota_usage = 0
        self.quota_total = 250
        self._ids = itertools.count(18000000000000001)

    @property
    def live(self) -> list[ThreadsPost]:
        with self._lock:
            return [p for p in self.posts if not p.deleted]

    @property
    def texts(self) -> list[str]:
        return [p.text for p in self.live]

    def scripted(self, method: str, path: str) -> bool:
        path = urlsplit(path).path
        return path.endswith("/threads_publish") or method == "DELETE"

    def route(self, request: Request) -> Answer:
        if request.header("Authorization") != f"Bearer {self.access_token}":
            return self.error(401)
        path = urlsplit(request.path).path
        match = re.match(r"^/v1\.0/(?P<id>[0-9]+)(?:/(?P<edge>[a-z_]+))?$", path)
        if match is None:
            return self._error(400, "Unsupported request", 100)
        node, edge = match["id"], match["edge"]
        if node == self.user_id:
            return self._user_edge(request, edge)
        if request.method == "GET" and edge is None and node in self.containers:
            container = self.containers[node]
            return Answer(200, {"status": container.status, "id": container.id})
        if request.method == "DELETE" and edge is None:
            return self._delete(node)
        return self._error(400, f"Unsupported get request. Object with ID '{node}' does not "
                                "exist", 100, 33)

    def error(self, status: int, message: str | None = None) -> Answer:
        if status == 401:
            return self._error(401, message or "Error validating access token: Session has "
                               "expired", 190, 463)
        if status == 403:
            return self._error(403, message or "Application does not have permission for "
                               "this action", 10)
        if status >= 500:
            return self._error(status, message or "An unexpected error has occurred. Please "
                               "retry your request later.", 2, transient=True)
        return self._error(status, message or "Invalid parameter", 100)

    def rate_limited(self, reset_at: float | None) -> Answer:
        return self._error(400, "Application request limit reached", 4)

    def _error(self, status: int, message: str, code: int, subcode: int | None = None,
               transient: bool = False) -> Answer:
        error: dict[str, object] = {"message": message, "type": "OAuthException", "code": code,
                                    "fbtrace_id": "AfakeThreadsTrace"}
        if subcode is not None:
            error["error_subcode"] = subcode
        if transient:
            error["is_transient"] = True
        return Answer(status, {"error": error})

    def _user_edge(self, request: Request, edge: str | None) -> Answer:
        if request.method == "POST" and edge == "threads":
            fields = request.fields()
            text = str(fields.get("text") or "")
            if fields.get("media_type") != "TEXT" or not text:
                return self._error(400, "The parameter text is required", 100)
            if threads_length(text) > 500:
                return self._error(400, "The text is longer than 500 characters", 100,
                                   2207018)
            container = Container(id=str(next(self._ids)), text=text)
            self.containers[container.id] = container
            return Answer(200, {"id": container.id})
        if request.method == "POST" and edge == "threads_publish":
            return self._publish(str(request.fields().get("creation_id")))
        if request.method == "GET" and edge == "threads_publishing_limit":
            return Answer(200, {"data": [{"quota_usage": self.quota_usage, "config": {
                "quota_total": self.quota_total, "quota_duration": 86400}}]})
        if request.method == "GET" and edge == "threads":
            data = [{"id": p.id, "text": p.text,
                     "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")}
                    for p in reversed(self.posts) if not p.deleted][:25]
            return Answer(200, {"data": data, "paging": {}})
        return self._error(400, "Unsupported request", 100)

    def _publish(self, creation_id: str) -> Answer:
        container = self.containers.get(creation_id)
        if container is None:
            return self._error(400, "Media ID is not available", 24, 4279009)
        if container.status == "PUBLISHED":
            return self._error(400, "The media has been published already", 24, 4279009)
        if self.quota_usage >= self.quota_total:
            return self._error(400, "Application request limit reached: the profile has "
                               "reached its 24-hour publishing limit", 4)
        post = ThreadsPost(id=str(next(self._ids)), text=container.text)
        self.posts.append(post)
        container.status, container.media_id = "PUBLISHED", post.id
        self.quota_usage += 1
        return Answer(200, {"id": post.id})

    def _delete(self, media_id: str) -> Answer:
        post = next((p for p in self.posts if p.id == media_id and not p.deleted), None)
        if post is None:
            return self._error(400, f"Unsupported delete request. Object with ID '{media_id}' "
                                    "does not exist", 100, 33)
        post.deleted = True
        return Answer(200, {"success": True})
