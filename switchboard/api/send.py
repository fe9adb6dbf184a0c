"""`POST /api/v1/send`: one post sent now, answered with its outcome."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiohttp import web

from switchboard import refusals
from switchboard.api.common import (
    IDEMPOTENCY_KEY,
    earlier_request,
    error,
    json_object,
    ok,
    replayed,
    request_key,
)
from switchboard.api.posts import poster
from switchboard.model import Post
from switchboard.posts import post_json
from switchboard.poststates import PostState
from switchboard.store import INTERRUPTED_SEND

if TYPE_CHECKING:
    from switchboard.api.posts import PostsApi
    from switchboard.api.services import Services

SEND_WAIT = 120.0  # seconds an immediate send waits for its outcome before a 202


class SendApi:
    def __init__(self, services: Services, posts: PostsApi) -> None:
        self.d = services
        self.posts = posts

    async def send(self, request: web.Request) -> web.Response:
        caller = poster(request)
        body = await json_object(request)
        key = request_key(request, caller, body)
        earlier = await earlier_request(self.d.store, key)
        if earlier is not None:
            return replayed(await self._send_again(earlier.refs[0], caller.name))
        default_kind = "operational" if caller.role == "ops" else "marketing"
        new = self.posts.new_post(request, {k: v for k, v in body.items()
                                            if k in ("channel", "kind", "text", "link")},
                                  self.d.clock(), self.posts.limits(), default_kind)
        if new.state == PostState.PENDING_APPROVAL:
            raise refusals.conflict(f"marketing posts on {new.channel} need approval: "
                                    "schedule it and have an approver approve it")
        decision = self.d.gate.decide(new.channel, new.kind, self.d.clock())
        if not decision.allowed:
            raise refusals.conflict(f"{decision.reason}: {new.kind} posts are held until "
                                    "it is resolved")
        post = (await self.d.publisher.submit([(new.channel, new.text)], caller.name,
                                              kind=new.kind, link=new.link, request=key,
                                              immediate=True))[0]
        return send_answer(post)

    async def _send_again(self, post_id: int, actor: str) -> web.Response:
        """A repeat of an immediate send: the first answer, unless a restart caught the
        send before it started; then (and only then) it goes now."""
        post = await self.d.store.post(post_id)
        assert post is not None
        interrupted = post.state == PostState.FAILED and post.error == INTERRUPTED_SEND
        if interrupted and await self.d.store.transition(
                [post_id], PostState.QUEUED, (PostState.FAILED,), self.d.clock(), actor,
                f"asked again with the same {IDEMPOTENCY_KEY}", error=None):
            waiter: asyncio.Future[Post] = asyncio.get_running_loop().create_future()
            queued = await self.d.store.post(post_id)
            assert queued is not None
            await self.d.publisher.route([queued], {queued.id: waiter})
            await asyncio.wait([waiter], timeout=SEND_WAIT)
            post = await self.d.store.post(post_id)
            assert post is not None
        return send_answer(post)


def send_answer(post: Post) -> web.Response:
    if post.state == PostState.SUPPRESSED:
        raise refusals.conflict(f"an incident took channel {post.channel} before the send "
                                f"started (INC-{post.incident_id}); post {post.id} is held")
    if post.state == PostState.FAILED:
        return error(502, "publish_failed", f"post {post.id} failed: {post.error}")
    # 202: still on its way (a rate limit, a slow platform); do not send it again.
    return ok(post_json(post), 201 if post.state == PostState.PUBLISHED else 202)
