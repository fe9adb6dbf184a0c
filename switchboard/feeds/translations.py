"""Choosing among a feed's translations by the configured `language`.

The wanted language first, then English (the daemon's default language),
then whatever comes first: so which text is read does not hang on the order
a producer happens to write its translations in, as long as one of the two
is there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
DEFAULT_LANGUAGE = "en"


def language_matches(tag: str, wanted: str) -> bool:
    """`en` matches en, en-US, EN, en_GB; `en-GB` matches only en-GB (any case)."""
    offered = tag.strip().lower().replace("_", "-")
    asked = wanted.strip().lower().replace("_", "-")
    return offered == asked or offered.startswith(f"{asked}-")


def choose(items: Sequence[T], language_of: Callable[[T], str], wanted: str) -> T | None:
    """The item in `wanted`, else in English, else the first; None when empty."""
    for preferred in dict.fromkeys((wanted, DEFAULT_LANGUAGE)):
        for item in items:
            if language_matches(language_of(item), preferred):
                return item
    return items[0] if items else None
