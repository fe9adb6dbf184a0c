"""The Posts and Held pages: posts listed by state and channel, and the
actions on many at once (cancel, release, drop, approve; held posts released
spaced or dropped), each post checked as the API checks it."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from aiohttp import web

from switchboard import people, refusals
from switchboard.api import LISTED_STATES
from switchboard.console.page import PAGE, Page, done, form_ids, form_str
from switchboard.posts import spaced_times
from switchboard.poststates import PostState
from switchboard.refusals import Refused

if TYPE_CHECKING:
    from switchboard.console.page import Add

HELD_SPACING = timedelta(minutes=5)  # when the holding runbook is gone
POST_ACTIONS = ("cancel", "release", "drop", "approve")


class PostPages(Page):
    def routes(self, add: Add) -> None:
        page = self.guard.page
        add("GET", "/posts", page(self.posts))
        add("POST", "/posts/actions", page(self.posts_action))
        add("GET", "/held", page(self.held))
        add("POST", "/held", page(self.held_action))

    async def posts(self, request: web.Request) -> web.StreamResponse:
        state = request.query.get("state", "")
        states: list[str] = [state] if state in LISTED_STATES else list(LISTED_STATES)
        if "scheduled" in states and "queued" not in states:
            states.append(PostState.QUEUED)
        channel = request.query.get("channel") or None
        after = _after(request.query.get("after", ""))
        page = await self.d.store.page_posts(states, channel, after, PAGE + 1)
        more = page[PAGE - 1] if len(page) > PAGE else None
        return await self.guard.render(request, "posts.html", {
            "title": "Posts", "posts": page[:PAGE], "state": state, "channel": channel or "",
            "states": LISTED_STATES, "channels": self.d.config.channels,
            "next": f"{more.due_at!r}:{more.id}" if more else None,
            "total": await self.d.store.count_posts(states, channel), "actions": POST_ACTIONS,
            **self.flash(request)})

    async def posts_action(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        action = form_str(form, "action")
        ids = form_ids(form)
        back = form_str(form, "back") or "/posts"
        if not back.startswith("/") or back.startswith("//"):
            back = "/posts"
        if action not in POST_ACTIONS or not ids:
            raise done(back, "choose posts and an action")
        moved, refused = await self.bulk(request, action, ids, None)
        raise done(back, f"{action}: {moved} post(s)", refused)

    async def bulk(self, request: web.Request, action: str, ids: list[int],
             times: list[float] | None) -> tuple[int, str]:
        """Each post checked as the API checks it; one refusal stops only its post."""
        caller = self.caller(request)
        moved, problems = 0, []
        for n, post_id in enumerate(ids):
            try:
                if action == "approve":
                    await self.approve(request, post_id)
                else:
                    if not caller.can("marketing"):
                        raise refusals.forbidden(f"{action} needs the marketing role")
                    await self.api.check_post_access(request, post_id)
                    await self.d.review.review(post_id, action, caller.name,
                                               None if times is None else times[n])
                moved += 1
            except Refused as exc:
                problems.append(f"{post_id}: {exc.message}")
        return moved, "; ".join(problems)[:600]

    async def approve(self, request: web.Request, post_id: int) -> None:
        caller = self.caller(request)
        post = await self.api.pending(request, post_id)
        now = self.d.clock()
        due = now if post.kind == "operational" else post.due_at
        if due < now:
            raise refusals.conflict(f"post {post_id} was due at {self.guard.when(due)}, which has "
                                    "passed: edit its time first")
        if not await self.d.store.transition([post_id], PostState.SCHEDULED,
                                       (PostState.PENDING_APPROVAL,), now,
                                       caller.name, f"approved by {caller.name}", due_at=due):
            raise refusals.conflict(f"post {post_id} is no longer pending approval")
        self.d.publisher.poke(due)

    # -- Held -----------------------------------------------------------------

    async def held(self, request: web.Request) -> web.StreamResponse:
        posts = await self.d.store.page_posts(["held"], None, limit=500)
        caller = self.caller(request)
        mine = [p for p in posts if people.may_act(caller, p, self.d.config)]
        return await self.guard.render(request, "held.html", {
            "title": "Held", "posts": mine, **self.flash(request)})

    async def held_action(self, request: web.Request) -> web.StreamResponse:
        """Release spaced (per channel: the first now, the others by the holding
        runbook's min_spacing) or drop."""
        form = await request.post()
        action = form_str(form, "action")
        ids = form_ids(form)
        if action not in ("release", "drop") or not ids:
            raise done("/held", "choose held posts and release or drop")
        times = await self.spaced(ids) if action == "release" else None
        moved, refused = await self.bulk(request, action, ids, times)
        verb = "released spaced" if action == "release" else "dropped"
        raise done("/held", f"{verb}: {moved} post(s)", refused)

    async def spaced(self, ids: list[int]) -> list[float]:
        """New due times: per channel, the first now and the others spaced by the
        holding runbook's min_spacing, so no channel gets a burst."""
        now = self.d.clock()
        by_channel: dict[str, list[int]] = {}
        spacing: dict[str, timedelta] = {}
        for post in await self.d.store.posts(ids):
            by_channel.setdefault(post.channel, []).append(post.id)
            incident = (await self.d.store.incident(post.incident_id)
                        if post.incident_id is not None else None)
            book = self.d.runbooks.get(incident.runbook) if incident else None
            spacing.setdefault(post.channel,
                               book.resolve.min_spacing if book else HELD_SPACING)
        due: dict[int, float] = {}
        for channel, posts in by_channel.items():
            due.update(zip(posts, spaced_times(now, len(posts), spacing[channel]),
                           strict=True))
        return [due.get(post_id, now) for post_id in ids]


def _after(value: str) -> tuple[float, int] | None:
    due, _, ident = value.partition(":")
    try:
        return float(due), int(ident)
    except ValueError:
        return None
