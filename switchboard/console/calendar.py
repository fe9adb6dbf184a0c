"""The Calendar page: a week or a month of posts in the organisation's time
zone, of one channel, one team's channels, or all, bounded whatever is stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from aiohttp import web

from switchboard.console.page import Page
from switchboard.model import Post

if TYPE_CHECKING:
    from switchboard.console.page import Add

DAY_SHOWN = 20  # posts shown in one calendar day; the rest are on the Posts page
CALENDAR_MAX = 2000  # posts read for one calendar view at most
VISIBLE = ("pending_approval", "scheduled", "queued", "sending", "published", "held",
           "failed", "unknown", "missed")


class CalendarPage(Page):
    def routes(self, add: Add) -> None:
        add("GET", "/calendar", self.guard.page(self.calendar))

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
