"""Approvals: a marketing post on a channel that needs one waits for a second
person of its team, who approves (for its time or a new one) or rejects it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from switchboard import people, refusals
from switchboard.api.common import json_object, ok, parse_int, required_str, text_field
from switchboard.auth import Caller
from switchboard.clock import rfc3339
from switchboard.model import Post
from switchboard.posts import parse_future, post_json
from switchboard.poststates import PostState

if TYPE_CHECKING:
    from switchboard.api.posts import PostsApi
    from switchboard.api.services import Services


class ApprovalsApi:
    def __init__(self, services: Services, posts: PostsApi) -> None:
        self.d = services
        self.posts = posts

    async def approve_post(self, request: web.Request) -> web.Response:
        caller: Caller = request["caller"]
        post_id = parse_int(request.match_info["id"], "post id")
        body = await json_object(request, optional=True)
        post = await self.pending(request, post_id)
        not_an_editor(caller, post_id, await self.d.store.post_history(post_id))
        now = self.d.clock()
        # An ops update is for now, whenever its second person approves it.
        due = now if post.kind == "operational" else post.due_at
        if body.get("at") is not None:
            due = parse_future(text_field(body, "at"), now, self.d.config.timezone)
        elif due < now:  # its slot has gone: only a person can pick the next one
            raise refusals.conflict(f"post {post_id} was due at {rfc3339(due)}, which has "
                                    "passed: approve it with a new time (at)")
        if not await self.d.store.transition([post_id], PostState.SCHEDULED,
                                             (PostState.PENDING_APPROVAL,), now, caller.name,
                                             f"approved by {caller.name}",
                                             due_at=max(due, now)):
            raise refusals.conflict(f"post {post_id} is no longer pending approval")
        self.d.publisher.poke(max(due, now))
        return ok(post_json(await self._reload(post_id)))

    async def reject_post(self, request: web.Request) -> web.Response:
        caller: Caller = request["caller"]
        post_id = parse_int(request.match_info["id"], "post id")
        reason = required_str(await json_object(request), "reason")
        await self.pending(request, post_id)
        if not await self.d.store.transition([post_id], PostState.REJECTED,
                                             (PostState.PENDING_APPROVAL,),
                                             self.d.clock(), caller.name,
                                             f"rejected by {caller.name}: {reason}"):
            raise refusals.conflict(f"post {post_id} is no longer pending approval")
        return ok(post_json(await self._reload(post_id)))

    async def pending(self, request: web.Request, post_id: int) -> Post:
        """The post waiting for this caller's approval (403 if they may not approve it)."""
        post = await self.d.store.post(post_id)
        if post is None:
            raise refusals.not_found(f"no post {post_id}")
        people.check_approver(request["caller"], post, self.d.config)
        self.posts.note_team(request, post.channel)
        if post.state != PostState.PENDING_APPROVAL:
            raise refusals.conflict(f"post {post_id} is {post.state}, not pending approval")
        return post

    async def _reload(self, post_id: int) -> Post:
        post = await self.d.store.post(post_id)
        assert post is not None
        return post


def not_an_editor(caller: Caller, post_id: int, history: list[dict[str, Any]]) -> None:
    """Who changed a post cannot approve it, as its author cannot: the text that
    would go out must have been seen by a second person."""
    if any(h["actor"] == caller.name and str(h["reason"] or "").startswith("edited:")
           for h in history):
        raise refusals.forbidden(f"{caller.name} edited post {post_id}: another approver "
                                 "must approve it")

