"""Writing posts: Compose (schedule or send now, the length counted as the
channel counts it), a post's Edit page, and the send-now path the Now page
shares."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from switchboard import people, refusals
from switchboard.api import role_for
from switchboard.channels.base import with_link
from switchboard.console.page import Page, done, form_str, probe
from switchboard.model import Post
from switchboard.refusals import Refused
from switchboard.text import decimal

if TYPE_CHECKING:
    from switchboard.console.page import Add


class Posting(Page):
    def routes(self, add: Add) -> None:
        page = self.guard.page
        add("GET", "/compose", page(self.compose))
        add("POST", "/compose", page(self.compose_post))
        add("POST", "/compose/count", page(self.count))
        add("GET", "/posts/{id}/edit", page(self.edit_form))
        add("POST", "/posts/{id}/edit", page(self.edit))

    async def send_one(self, request: web.Request, item: dict[str, str]) -> Post:
        """The API's send: the post checked for the caller, the gate asked, then sent."""
        caller = self.caller(request)
        kind = item.get("kind") or ("marketing" if caller.can("marketing") else "operational")
        if not caller.can("ops" if kind == "operational" else "marketing"):
            raise refusals.forbidden(f"{caller.name} cannot send {kind} posts")
        new = self.api.new_post(request, {**item, "kind": kind}, self.d.clock(),
                                 self.api.limits())
        if new.state == "pending_approval":
            raise refusals.conflict(f"marketing posts on {new.channel} need approval: "
                                    "schedule it and have an approver approve it")
        decision = self.d.gate.decide(new.channel, new.kind, self.d.clock())
        if not decision.allowed:
            raise refusals.conflict(f"{decision.reason}: {new.kind} posts are held")
        post = (await self.d.publisher.submit([(new.channel, new.text)], caller.name,
                                              kind=new.kind, link=new.link,
                                                immediate=True))[0]
        if post.state == "suppressed":
            raise refusals.conflict(f"an incident took {post.channel} before the send "
                                    f"started (INC-{post.incident_id}); the post is held")
        return post

    # -- Compose --------------------------------------------------------------

    async def compose_context(self, request: web.Request, values: dict[str, str]) -> dict[str, Any]:
        caller = self.caller(request)
        channels = [c for c in self.d.config.channels
                    if (c.audience == "public" and caller.can("marketing")
                        and people.may_act(caller, probe(c.id), self.d.config))
                    or caller.can("ops")]
        return {"title": "Compose", "channels": channels, "values": values,
                "count": await self.counted(values.get("channel") or
                                      (channels[0].id if channels else ""),
                                      values.get("text", ""), values.get("link", ""),
                                      values.get("kind", "")),
                "approval": {c.id: self.d.config.needs_approval(c.id) for c in channels},
                "oob": False, **self.flash(request)}

    async def counted(self, channel: str, text: str, link: str = "",
                kind: str = "marketing") -> dict[str, Any] | None:
        """The length of the text as published (the link appended), counted as the
        channel's platform counts it: what the server will check; and the incidents
        holding the channel for this kind of post, if any."""
        limit = self.api.limits().get(channel)
        if limit is None:
            return None
        text = with_link(text, link or None)
        length = limit.length(text)
        return {"channel": channel, "length": length, "max": limit.max_length,
                "over": length > limit.max_length, "text": text,
                "held": await self.held_by(channel, kind or "marketing")}

    async def compose(self, request: web.Request) -> web.StreamResponse:
        values = {"channel": request.query.get("channel", ""), "text": "", "at": "",
                  "link": ""}
        context = await self.compose_context(request, values)
        return await self.guard.render(request, "compose.html", context)

    async def count(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        return await self.guard.render(request, "count.html", {
            "count": await self.counted(form_str(form, "channel"), str(form.get("text", "")),
                                  form_str(form, "link"), form_str(form, "kind")),
            "oob": True})

    async def compose_post(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        values = {k: form_str(form, k) for k in ("channel", "text", "at", "link", "kind")}
        caller = self.caller(request)
        item = {"channel": values["channel"], "text": values["text"],
                "kind": values["kind"] or ("operational" if not caller.can("marketing")
                                           else "marketing")}
        if values["link"]:
            item["link"] = values["link"]
        try:
            if form_str(form, "action") == "send":
                post = await self.send_one(request, item)
                raise done("/compose", f"post {post.id} on {post.channel}: {post.state}")
            if not values["at"]:
                raise refusals.bad_request("give a time to schedule at")
            item["at"] = values["at"]
            if not (caller.can("marketing") or caller.can("ops")):
                raise refusals.forbidden(f"{caller.name} cannot post")
            new = self.api.new_post(request, item, self.d.clock(), self.api.limits())
            ids = await self.d.store.add_posts([new], caller.name, self.d.clock())
            self.d.publisher.poke(new.due_at)
        except Refused as exc:
            return await self.guard.refused(request, "compose.html",
                                      await self.compose_context(request, values), exc)
        state = "waiting for approval" if new.state == "pending_approval" else "scheduled"
        raise done("/compose", f"post {ids[0]} {state} on {new.channel} for "
                               f"{self.guard.when(new.due_at)}")

    # -- Edit -----------------------------------------------------------------

    def edit_context(self, request: web.Request, post: Post,
                     values: dict[str, str]) -> dict[str, Any]:
        return {"title": f"Post {post.id}", "post": post, "values": values,
                "editable": post.state in ("scheduled", "pending_approval"),
                **self.flash(request)}

    def local_input(self, at: float) -> str:
        local = datetime.fromtimestamp(at, UTC).astimezone(self.d.config.timezone)
        return local.strftime("%Y-%m-%dT%H:%M")

    async def post_or_404(self, request: web.Request) -> Post:
        raw = request.match_info["id"]
        number = decimal(raw)
        post = None if number is None else await self.d.store.post(number)
        if post is None:
            raise web.HTTPNotFound(text=f"no post {raw[:40]}")
        return post

    async def edit_form(self, request: web.Request) -> web.StreamResponse:
        post = await self.post_or_404(request)
        values = {"text": post.text, "at": self.local_input(post.due_at)}
        return await self.guard.render(request, "edit.html",
                                       self.edit_context(request, post, values))

    async def edit(self, request: web.Request) -> web.StreamResponse:
        """A new text or time for a post not yet on its way; an edited post on a channel
        that needs approval waits for approval again."""
        post = await self.post_or_404(request)
        form = await request.post()
        values = {"text": form_str(form, "text"), "at": form_str(form, "at")}
        caller = self.caller(request)
        try:
            people.check_post(caller, post.channel, post.kind, self.d.config)
            if post.kind == "operational" and not caller.can("ops"):
                raise refusals.forbidden("operational posts are edited by ops")
            # The same edit as `PATCH /api/v1/posts/{id}`: checked like a new post,
            # taken back from its queue if need be, and sent back for approval.
            await self.d.review.edit_post(post.id, {"text": values["text"], "at": values["at"]},
                                          role_for(caller, post.kind), caller.name,
                                          self.api.limits())
        except Refused as exc:
            return await self.guard.refused(request, "edit.html",
                                      self.edit_context(request, post, values), exc)
        raise done(f"/posts/{post.id}/edit", f"post {post.id} saved")
