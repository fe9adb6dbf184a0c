"""`post edit`: which fields of a post may change, in which states, checked like a
new post, and the change as the post's history tells it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

from switchboard import refusals
from switchboard.clock import rfc3339
from switchboard.model import Post
from switchboard.posts.request import KIND_ROLES, ChannelLimit, as_str, required_str
from switchboard.posts.times import parse_future, parse_when

# What `post edit` may change, and the states in which a post may still change:
# `queued` only while it waits in its channel's queue (the caller checks that).
EDIT_FIELDS = {"text", "at", "due_at", "channel", "expires", "expires_at"}
EDITABLE_STATES = ("scheduled", "queued", "pending_approval")


def post_edit(post: Post, body: Mapping[str, Any], *, role: str, now: float, tz: ZoneInfo,
              channels: Mapping[str, ChannelLimit]) -> dict[str, Any]:
    """The changed columns of `post` (old values left out), checked like a new post.

    Raises Refused naming what is wrong; an empty result means nothing changes.
    """
    if not isinstance(body, Mapping) or not body:
        raise refusals.bad_request("an edit is a JSON object with text, at, channel or "
                                   "expires")
    unknown = set(body) - EDIT_FIELDS
    if unknown:
        raise refusals.bad_request(f"unknown or fixed post field(s): {', '.join(sorted(unknown))}"
                                   " (editable: text, at, channel, expires)")
    if role not in KIND_ROLES[post.kind]:
        raise refusals.forbidden(f"the {role} role cannot edit {post.kind} posts")
    if post.state not in EDITABLE_STATES:
        shown = "scheduled" if post.state == "queued" else post.state
        raise refusals.conflict(f"post {post.id} is {shown}; only scheduled posts (or posts "
                                "pending approval) can be edited")
    merged = {"channel": post.channel, "kind": post.kind, "text": post.text,
              "due_at": post.due_at, "expires_at": post.expires_at}
    if "channel" in body:
        merged["channel"] = required_str(body, "channel")
    if "text" in body:
        merged["text"] = required_str(body, "text")
    when = body.get("at", body.get("due_at"))
    if when is not None:
        merged["due_at"] = parse_future(as_str(when, "at"), now, tz)
    if "expires" in body or "expires_at" in body:
        expires = body.get("expires", body.get("expires_at"))
        merged["expires_at"] = (None if expires in (None, "") else
                                parse_when(as_str(expires, "expires"), now, tz))
    _check_edit(merged, channels)
    return {k: v for k, v in merged.items() if k != "kind" and getattr(post, k) != v}


def _check_edit(merged: dict[str, Any], channels: Mapping[str, ChannelLimit]) -> None:
    channel, kind, text = merged["channel"], merged["kind"], merged["text"]
    if channel not in channels:
        raise refusals.not_found(f"no channel named {channel!r} "
                                 f"(channels: {', '.join(sorted(channels))})")
    if kind == "marketing" and channels[channel].audience != "public":
        raise refusals.unprocessable(f"channel {channel} is {channels[channel].audience}: "
                                     "marketing posts go to public channels")
    limit = channels[channel].max_length
    if len(text) > limit:
        raise refusals.unprocessable(f"text is {len(text)} characters; channel {channel} "
                                     f"allows at most {limit}")
    if merged["expires_at"] is not None and merged["expires_at"] <= merged["due_at"]:
        raise refusals.unprocessable("expires must be later than the due time")


def describe_changes(post: Post, changes: Mapping[str, Any]) -> str:
    """`text 'old' -> 'new'; due_at ... -> ...`: what an edit changed, for the history."""
    parts = []
    for key in ("channel", "text", "due_at", "expires_at"):
        if key in changes:
            old, new = getattr(post, key), changes[key]
            if key.endswith("_at"):
                old, new = rfc3339(old) or "none", rfc3339(new) or "none"
                parts.append(f"{key} {old} -> {new}")
            else:
                parts.append(f"{key} {old!r} -> {new!r}")
    return "edited: " + "; ".join(parts)
