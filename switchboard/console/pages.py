"""The console's pages: each one view and one template (design §7.5).

Views call the services the API calls (incidents, the gate, the store's
transitions, people's checks) with the signed-in person as the caller, so
the console can do nothing the person's roles and teams would not let the
API do. Forms post back and redirect (they work without JavaScript); htmx
refreshes the live parts when the event stream says something moved.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aiohttp import web

from switchboard import people, refusals
from switchboard.api import LISTED_STATES, posting_role, role_for
from switchboard.auth import Caller
from switchboard.channels.base import with_link
from switchboard.incidents import parse_incident_id
from switchboard.model import Post
from switchboard.posts import check_import, spaced_times
from switchboard.poststates import PostState
from switchboard.refusals import Refused
from switchboard.runbooks import channel_infos
from switchboard.simulate import format_text, simulate

if TYPE_CHECKING:
    from switchboard.console.guard import Guard

PAGE = 50
HELD_SPACING = timedelta(minutes=5)  # when the holding runbook is gone
DAY_SHOWN = 20  # posts shown in one calendar day; the rest are on the Posts page
CALENDAR_MAX = 2000  # posts read for one calendar view at most
VISIBLE = ("pending_approval", "scheduled", "queued", "sending", "published", "held",
           "failed", "unknown", "missed")
POST_ACTIONS = ("cancel", "release", "drop", "approve")


def form_str(form: Any, key: str) -> str:
    value = form.get(key, "")
    return value.strip() if isinstance(value, str) else ""


def done(location: str, message: str, refused: str = "") -> web.HTTPSeeOther:
    """Back to a page (post, redirect, get) saying what was done and what was refused."""
    sep = "&" if "?" in location else "?"
    tail = f"&refused={quote(refused)}" if refused else ""
    return web.HTTPSeeOther(f"{location}{sep}ok={quote(message)}{tail}")


class Pages:
    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        self.d = guard.d
        self.api = guard.api

    def routes(self, add: Any) -> None:
        page = self.guard.page
        add("GET", "/", page(self.now))
        add("GET", "/banners", page(self.banners))
        add("POST", "/send", page(self.send))
        add("GET", "/incidents", page(self.incidents))
        add("POST", "/incidents", page(self.declare))
        add("GET", "/incidents/preview", page(self.preview))
        add("POST", "/incidents/preview", page(self.preview))
        add("GET", "/incidents/{id}", page(self.incident))
        add("POST", "/incidents/{id}/{action}", page(self.incident_action))
        add("GET", "/compose", page(self.compose))
        add("POST", "/compose", page(self.compose_post))
        add("POST", "/compose/count", page(self.count))
        add("GET", "/calendar", page(self.calendar))
        add("GET", "/posts", page(self.posts))
        add("POST", "/posts/actions", page(self.posts_action))
        add("GET", "/posts/{id}/edit", page(self.edit_form))
        add("POST", "/posts/{id}/edit", page(self.edit))
        add("GET", "/held", page(self.held))
        add("POST", "/held", page(self.held_action))
        add("GET", "/import", page(self.import_form))
        add("POST", "/import", page(self.import_post))
        add("GET", "/runbooks", page(self.runbooks))
        add("GET", "/audit", page(self.audit))
        add("GET", "/users", page(self.users))
        add("POST", "/users", page(self.users_post))

    def caller(self, request: web.Request) -> Caller:
        caller: Caller = request["caller"]
        return caller

    def flash(self, request: web.Request) -> dict[str, Any]:
        return {"ok": request.query.get("ok", "")[:300],
                "error": request.query.get("refused", "")[:600]}

    # -- Now ------------------------------------------------------------------

    async def channel_rows(self, caller: Caller) -> list[dict[str, Any]]:
        rows = []
        for item in self.d.channel_list():
            cid = item["id"]
            nxt = await self.d.store.page_posts(["scheduled", "queued"], cid, limit=1)
            rows.append({**item, "next": nxt[0] if nxt else None,
                         "held_by": await self.held_by(cid, "marketing"),
                         "may_send": item["audience"] == "public"
                         and people.may_act(caller, _probe(cid), self.d.config)
                         and caller.can("marketing")})
        return rows

    def feed_rows(self) -> list[dict[str, Any]]:
        registry = self.d.metrics.registry
        out = []
        for feed in self.d.config.feeds:
            last = registry.get_sample_value("switchboard_feed_last_success_timestamp_seconds",
                                             {"feed": feed.id})
            out.append({"id": feed.id, "kind": feed.kind, "last_success": last or None})
        return out

    async def now(self, request: web.Request) -> web.StreamResponse:
        return await self.guard.render(request, "now.html", {
            **self.flash(request), "channels": await self.channel_rows(self.caller(request)),
            "feeds": self.feed_rows(), "title": "Now"})

    async def banners(self, request: web.Request) -> web.StreamResponse:
        return await self.guard.render(request, "banners.html", {})

    async def send(self, request: web.Request) -> web.StreamResponse:
        """Send now from the Now page: the API's checks, the gate, then the send."""
        form = await request.post()
        caller = self.caller(request)
        try:
            post = await self.send_one(request, {"channel": form_str(form, "channel"),
                                                 "text": form_str(form, "text")})
        except Refused as exc:
            return await self.guard.refused(request, "now.html", {
                "ok": "", "channels": await self.channel_rows(caller), "feeds": self.feed_rows(),
                "title": "Now"}, exc)
        raise done("/", f"post {post.id} on {post.channel}: {post.state}")

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

    # -- Incidents ------------------------------------------------------------

    async def incidents_context(self, request: web.Request,
                          values: Any = None) -> dict[str, Any]:
        """The page; `values` (a form or query) refills the declaration form."""
        listing, _ = await self.d.store.page_incidents(True, limit=PAGE)
        values = values or {}
        filled = {k: form_str(values, k) for k in ("runbook", "title", "severity", "reason")}
        filled_channels = [c for c in values.getall("channel", [])
                           if isinstance(c, str)] if values else []
        return {"title": "Incidents", "incidents": listing, "values": filled,
                "ticked": filled_channels,
                "runbooks": sorted(self.d.runbooks.values(), key=lambda r: r.name),
                "all_channels": [c for c in self.d.config.channels if c.audience == "public"],
                "preview": [], **self.flash(request)}

    async def incidents(self, request: web.Request) -> web.StreamResponse:
        context = await self.incidents_context(request)
        return await self.guard.render(request, "incidents.html", context)

    def holding(self, runbook: str, title: str,
                scope: list[str] | None = None) -> list[dict[str, Any]]:
        """What the runbook posts as it is declared (the holding statement), rendered;
        on the channels ticked, else the runbook's."""
        book = self.d.runbooks.get(runbook)
        if book is None:
            return []
        # Steps due at 0m are the ones run as it is declared.
        timeline = simulate(book, channel_infos(self.d.config.channels),
                            for_=timedelta(minutes=1), title=title or None,
                            timezone=self.d.config.timezone)
        return [{"channels": scope or e.channels, "text": e.text} for e in timeline.events
                if e.event == "step" and e.offset == timedelta(0) and e.text
                and e.action == "post"]

    async def preview(self, request: web.Request) -> web.StreamResponse:
        """The holding statement: a fragment for htmx, the whole page (the form kept
        as filled) without JS."""
        values = await request.post() if request.method == "POST" else request.query
        scope = [c for c in values.getall("channel", []) if isinstance(c, str)]
        preview = self.holding(form_str(values, "runbook"), form_str(values, "title")[:300],
                               scope)
        if request.headers.get("HX-Request"):
            return await self.guard.render(request, "preview.html", {"preview": preview})
        return await self.guard.render(request, "incidents.html",
                                 {**await self.incidents_context(request, values),
                                  "preview": preview})

    async def declare(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        caller = self.caller(request)
        runbook, title = form_str(form, "runbook"), form_str(form, "title")
        try:
            if not caller.can("ops"):
                raise refusals.forbidden(f"declaring needs the ops role ({caller.name} is "
                                         f"{caller.role})")
            reason = form_str(form, "reason")
            if not reason:
                raise refusals.bad_request("a reason is required: say why you declare")
            channels = [c for c in form.getall("channel", []) if isinstance(c, str)]
            incident = await self.d.incidents.declare(
                runbook=runbook, title=title, actor=caller.name,
                severity=form_str(form, "severity") or None, channels=channels or None,
                reason=reason)
        except Refused as exc:
            ctx = await self.incidents_context(request, form)
            ctx["preview"] = self.holding(runbook, title, ctx["ticked"])
            return await self.guard.refused(request, "incidents.html", ctx, exc)
        raise done(f"/incidents/{incident.id}", f"INC-{incident.id} declared")

    async def incident_context(self, request: web.Request, incident_id: int) -> dict[str, Any]:
        incident = await self.d.store.incident(incident_id)
        if incident is None:
            raise web.HTTPNotFound(text=f"no incident INC-{incident_id}")
        return {"title": f"INC-{incident.id}", "incident": incident,
                "timeline": await self.d.store.timeline(incident_id),
                "in_cooldown": incident.state == "resolved" and not incident.held_done,
                **self.flash(request)}

    async def incident(self, request: web.Request) -> web.StreamResponse:
        incident_id = parse_incident_id(request.match_info["id"])
        context = await self.incident_context(request, incident_id)
        return await self.guard.render(request, "incident.html", context)

    async def incident_action(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        caller = self.caller(request)
        action = request.match_info["action"]
        try:
            incident_id = parse_incident_id(request.match_info["id"])
        except Refused as exc:
            raise web.HTTPNotFound(text=exc.message) from exc
        try:
            if not caller.can("ops"):
                raise refusals.forbidden(f"{action} needs the ops role")
            message = await self.incident_do(incident_id, action, form, caller.name)
        except Refused as exc:
            return await self.guard.refused(request, "incident.html",
                                      await self.incident_context(request, incident_id), exc)
        raise done(f"/incidents/{incident_id}", message)

    async def incident_do(self, incident_id: int, action: str, form: Any, actor: str) -> str:
        text = form_str(form, "text")
        if action == "update":
            if not text:
                raise refusals.bad_request("the update needs a text")
            posts = await self.d.incidents.update(incident_id, text, actor)
            return f"update posted to {len(posts)} channel(s)"
        if action == "resolve":
            await self.d.incidents.resolve(incident_id, actor=actor, note=text or None)
            return f"INC-{incident_id} resolved"
        if action in ("void", "release"):
            if not text:
                raise refusals.bad_request("a reason is required")
            if action == "void":
                await self.d.incidents.void(incident_id, actor=actor, reason=text)
                return f"INC-{incident_id} voided"
            await self.d.incidents.release(incident_id, actor=actor, reason=text)
            return f"the cooldown of INC-{incident_id} ended"
        raise web.HTTPNotFound(text=f"no action {action[:40]}")

    # -- Compose --------------------------------------------------------------

    async def compose_context(self, request: web.Request, values: dict[str, str]) -> dict[str, Any]:
        caller = self.caller(request)
        channels = [c for c in self.d.config.channels
                    if (c.audience == "public" and caller.can("marketing")
                        and people.may_act(caller, _probe(c.id), self.d.config))
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

    async def held_by(self, channel: str, kind: str) -> list[Any]:
        now = self.d.clock()
        if self.d.gate.decide(channel, kind, now).allowed:
            return []
        found = [await self.d.store.incident(i) for i in self.d.gate.controlling(channel, now)]
        return [i for i in found if i is not None]

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

    # -- Calendar and edits -----------------------------------------------------

    async def calendar(self, request: web.Request) -> web.StreamResponse:
        tz = self.d.config.timezone
        view = "month" if request.query.get("view") == "month" else "week"
        today = datetime.fromtimestamp(self.d.clock(), tz).date()
        try:
            start = datetime.strptime(request.query["start"], "%Y-%m-%d").date()
        except (KeyError, ValueError):
            start = today
        if view == "month":
            first = start.replace(day=1)
            start = first - timedelta(days=first.weekday())
            days = 42
        else:
            start -= timedelta(days=start.weekday())
            days = 7
        channel = request.query.get("channel") or None
        team = request.query.get("team") or None
        begin = datetime(start.year, start.month, start.day, tzinfo=tz).timestamp()
        end = (datetime(start.year, start.month, start.day, tzinfo=tz)
               + timedelta(days=days)).timestamp()
        posts = await self.posts_between(begin, end, channel, team)
        grid: dict[str, list[Post]] = {}
        for post in posts:
            day = datetime.fromtimestamp(post.due_at, UTC).astimezone(tz).date().isoformat()
            grid.setdefault(day, []).append(post)
        day_list = [start + timedelta(days=i) for i in range(days)]
        step = timedelta(days=28 if view == "month" else 7)
        return await self.guard.render(request, "calendar.html", {
            "title": "Calendar", "view": view, "days": day_list, "grid": grid,
            "channel": channel or "", "team": team or "", "today": today,
            "prev": (start - step).isoformat(), "next": (start + step + timedelta(
                days=7 if view == "month" else 0)).isoformat(),
            "channels": self.d.config.channels, "teams": self.d.config.teams,
            "day_shown": DAY_SHOWN, "capped": len(posts) >= CALENDAR_MAX,
            **self.flash(request)})

    async def posts_between(self, begin: float, end: float, channel: str | None,
                      team: str | None) -> list[Post]:
        channels: list[str | None] = [channel]
        if channel is None and team is not None:
            found = next((t for t in self.d.config.teams if t.id == team), None)
            channels = list(found.channels) if found else []
        out: list[Post] = []
        # Bounded whatever is stored: a week holding 100,000 posts shows its first
        # CALENDAR_MAX, and each day says how many more the Posts page lists.
        for cid in channels:
            after: tuple[float, int] | None = (begin, 0)
            while after is not None and len(out) < CALENDAR_MAX:
                page = await self.d.store.page_posts(VISIBLE, cid, after=after, limit=500)
                page = [p for p in page if p.due_at < end]
                out += page
                after = (page[-1].due_at, page[-1].id) if len(page) == 500 else None
        return sorted(out, key=lambda p: (p.due_at, p.id))[:CALENDAR_MAX]

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
        post = await self.d.store.post(int(raw)) if raw.isascii() and raw.isdigit() else None
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

    # -- Posts and Held -------------------------------------------------------

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
        ids = [int(i) for i in form.getall("id", []) if isinstance(i, str) and i.isdigit()]
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
        ids = [int(i) for i in form.getall("id", []) if isinstance(i, str) and i.isdigit()]
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

    # -- Import ---------------------------------------------------------------

    async def import_form(self, request: web.Request) -> web.StreamResponse:
        return await self.guard.render(request, "import.html", {
            "title": "Import", "problems": [], "result": "", **self.flash(request)})

    async def import_post(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        caller = self.caller(request)
        upload = form.get("file")
        ctx: dict[str, Any] = {"title": "Import", "problems": [], "result": "", "ok": ""}
        try:
            if not (caller.can("marketing") or caller.can("ops")):
                raise refusals.forbidden(f"{caller.name} cannot post")
            if not isinstance(upload, web.FileField):
                raise refusals.bad_request("choose a CSV or JSON lines file to upload")
            data = upload.file.read()
            name = (upload.filename or "calendar.csv")[:200]
            dry = form_str(form, "action") == "dry-run"
            ctx["result"] = await self.import_rows(request, caller, data, name, dry, ctx)
        except Refused as exc:
            return await self.guard.refused(request, "import.html", ctx, exc)
        return await self.guard.render(request, "import.html", ctx,
                                 422 if ctx["problems"] else 200)

    async def import_rows(self, request: web.Request, caller: Caller, data: bytes,
                          name: str, dry: bool, ctx: dict[str, Any]) -> str:
        config = self.d.config

        def admit(post: Any) -> None:
            people.check_post(caller, post.channel, post.kind, config)
            if post.kind == "marketing" and config.needs_approval(post.channel):
                post.state = "pending_approval"

        now = self.d.clock()
        rows, problems = await asyncio.to_thread(
            check_import, data, name, role=posting_role(caller), now=now, tz=config.timezone,
            channels=self.api.limits(), admit=admit)
        if problems:
            ctx["problems"] = problems
            return f"{len(problems)} problem(s) in {name}; nothing was imported"
        if dry:
            return f"dry run: all {len(rows)} row(s) of {name} are good; nothing imported yet"
        created, existing = await self.d.store.import_posts(rows, caller.name, now)
        if created:
            self.d.publisher.poke(min(post.due_at for _, post in rows))
        return f"imported {len(created)} post(s) from {name} ({len(existing)} already there)"

    # -- Runbooks, Audit, Users -----------------------------------------------

    async def runbooks(self, request: web.Request) -> web.StreamResponse:
        books = sorted(self.d.runbooks.values(), key=lambda r: r.name)
        chosen = request.query.get("runbook", "")
        hours = request.query.get("hours", "3")
        text = ""
        book = self.d.runbooks.get(chosen)
        if book is not None:
            span = timedelta(hours=float(hours)) if _number(hours) else timedelta(hours=3)
            text = format_text(simulate(book, channel_infos(self.d.config.channels),
                                        for_=span, timezone=self.d.config.timezone))
        return await self.guard.render(request, "runbooks.html", {
            "title": "Runbooks", "runbooks": books, "chosen": chosen, "hours": hours,
            "simulation": text, **self.flash(request)})

    async def audit(self, request: web.Request) -> web.StreamResponse:
        caller = self.caller(request)
        try:
            teams = people.may_see_audit(caller)
        except Refused as exc:
            raise web.HTTPForbidden(text=exc.message) from exc
        entries = await self.d.store.audit(teams=None if teams is None else list(teams),
                                     since=self.d.clock() - 30 * 86400, limit=1000)
        return await self.guard.render(request, "audit.html", {
            "title": "Audit", "entries": entries[::-1][:200]})

    async def users_context(self, request: web.Request) -> dict[str, Any]:
        return {"title": "Users", "people": await self.d.store.people(),
                "teams": self.d.config.teams,
                **self.flash(request)}

    async def users(self, request: web.Request) -> web.StreamResponse:
        if self.caller(request).role != "admin":
            raise web.HTTPForbidden(text="Users is for admins")
        return await self.guard.render(request, "users.html", await self.users_context(request))

    async def users_post(self, request: web.Request) -> web.StreamResponse:
        """Add a person, or disable / enable one (their sessions stop at once)."""
        if self.caller(request).role != "admin":
            raise web.HTTPForbidden(text="Users is for admins")
        form = await request.post()
        try:
            name = form_str(form, "name")
            if form_str(form, "action") in ("disable", "enable"):
                await self.d.people.update(
                    name, {"disabled": form_str(form, "action") == "disable"})
                raise done("/users", f"{name} {form_str(form, 'action')}d")
            password = str(form.get("password", ""))
            hashed = await asyncio.to_thread(self.d.people.hash_password, password)
            teams = [t for t in form.getall("team", []) if isinstance(t, str) and t]
            await self.d.people.add({"name": name, "role": form_str(form, "role") or "viewer",
                               "teams": teams}, hashed)
        except Refused as exc:
            context = await self.users_context(request)
            return await self.guard.refused(request, "users.html", context, exc)
        raise done("/users", f"{name} added")


def _probe(channel: str) -> Post:
    """A stand-in post on `channel`, to ask whether a person's teams reach it."""
    return Post(0, channel, "marketing", "", None, PostState.SCHEDULED, 0.0, None, None, None, None,
                "", 0.0, None, 0.0)


def _after(value: str) -> tuple[float, int] | None:
    due, _, ident = value.partition(":")
    try:
        return float(due), int(ident)
    except ValueError:
        return None


def _number(value: str) -> bool:
    try:
        return 0 < float(value) <= 72
    except ValueError:
        return False
