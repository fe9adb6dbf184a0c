"""Choosing among a feed's translations by the configured `language`."""

from __future__ import annotations


def language_matches(tag: str, wanted: str) -> bool:
    """`en` matches en, en-US, EN, en_GB; `en-GB` matches only en-GB (any case)."""
    given = tag.strip().lower().replace("_", "-")
    want = wanted.strip().lower().replace("_", "-")
    return given == want or given.startswith(f"{want}-")
