"""A post request checked before it is stored (channel, kind, text and link
within the channel's limit, times, the role's right), and a post as the API
shows it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from switchboard import refusals
from switchboard.clock import rfc3339
from switchboard.model import NewPost, Post
from switchboard.posts.times import parse_future, parse_when
from switchboard.poststates import PostOrigin, PostState
from switchboard.text import lone_surrogate, surrogate_message

KINDS = ("marketing", "operational")
# Roles allowed to create each kind of post (admin holds both powers).
KIND_ROLES = {"marketing": {"marketing", "admin"}, "operational": {"ops", "admin"}}
_FIELDS = {"channel", "kind", "text", "link", "at", "due_at", "expires", "expires_at"}


@dataclass(frozen=True)
class ChannelLimit:
    id: str
    max_length: int
    audience: str = "public"
    # How the platform counts (X weighs CJK as 2 and any URL as 23); plain
    # characters where it counts those.
    length: Callable[[str], int] = len


def new_post(body: Mapping[str, Any], *, role: str, now: float, tz: ZoneInfo,
             channels: Mapping[str, ChannelLimit], default_kind: str = "marketing") -> NewPost:
    """Check one post request; raises Refused (400/403/404/422) naming what is wrong."""
    if not isinstance(body, Mapping):
        raise refusals.bad_request("a post must be a JSON object")
    unknown = set(body) - _FIELDS
    if unknown:
        raise refusals.bad_request(f"unknown post field(s): {', '.join(sorted(unknown))}")
    channel = required_str(body, "channel")
    if channel not in channels:
        raise refusals.not_found(f"no channel named {channel!r} "
                                 f"(channels: {', '.join(sorted(channels))})")
    kind = str(body.get("kind") or default_kind)
    if kind not in KINDS:
        raise refusals.bad_request(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if role not in KIND_ROLES[kind]:
        raise refusals.forbidden(f"the {role} role cannot create {kind} posts")
    if kind == "marketing" and channels[channel].audience != "public":
        # Internal channels are ops' chat: marketing there is a wrong channel id.
        raise refusals.unprocessable(f"channel {channel} is {channels[channel].audience}: "
                                     "marketing posts go to public channels")
    text = required_str(body, "text")
    link = body.get("link")
    link = None if link is None else as_str(link, "link")
    _check_length(channels[channel], text, link)
    when = body.get("at", body.get("due_at"))
    due_at = now if when is None else parse_future(as_str(when, "at"), now, tz)
    expires = body.get("expires", body.get("expires_at"))
    expires_at = None if expires is None else parse_when(as_str(expires, "expires"), now, tz)
    if expires_at is not None and expires_at <= due_at:
        raise refusals.unprocessable("expires must be later than the due time")
    # No time given: the caller means now, and the post is not "late" while it waits.
    origin = PostOrigin.SEND_NOW if when is None else PostOrigin.SCHEDULE
    return NewPost(channel=channel, kind=kind, text=text, due_at=due_at,
                   link=link, expires_at=expires_at, origin=origin)


def _check_length(limit: ChannelLimit, text: str, link: str | None) -> None:
    """Judge the text as it will be published, the appended link included, so a post
    the platform would refuse is refused now rather than failing at its due time."""
    published = text if not link or link in text else f"{text} {link}"
    length = limit.length(published)
    if length > limit.max_length:
        with_link = " with its link" if published != text else ""
        raise refusals.unprocessable(f"text{with_link} is {length} characters as channel "
                                     f"{limit.id} counts them; it allows at most "
                                     f"{limit.max_length}")


def required_str(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise refusals.bad_request(f"{key} is required and must be a non-empty string")
    return as_str(value, key)


def as_str(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise refusals.bad_request(f"{key} must be a string")
    index = lone_surrogate(value)
    if index is not None:
        raise refusals.bad_request(f"{key} {surrogate_message(value, index)}")
    return value


def post_json(post: Post) -> dict[str, Any]:
    return {
        "id": post.id,
        "channel": post.channel,
        "kind": post.kind,
        "text": post.text,
        "link": post.link,
        # `queued` is the dispatcher's internal hand-off; users see scheduled.
        "state": PostState.SCHEDULED if post.state == PostState.QUEUED else post.state,
        "due_at": rfc3339(post.due_at),
        "expires_at": rfc3339(post.expires_at),
        "incident_id": None if post.incident_id is None else f"INC-{post.incident_id}",
        "remote_id": post.remote_id,
        "error": post.error,
        "created_by": post.created_by,
        "created_at": rfc3339(post.created_at),
        "published_at": rfc3339(post.published_at),
    }
