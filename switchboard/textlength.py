"""How each platform counts a post's length, by channel kind.

Kept apart from the channel modules so that `check`, `simulate` and the API
can measure a text without importing a platform's client library.
"""

from __future__ import annotations

from collections.abc import Callable

import regex
from twitter_text import parse_tweet

_EMOJI = regex.compile(r"\p{Extended_Pictographic}|\p{Regional_Indicator}")


def weighted_length(text: str) -> int:
    """The length X counts against 280: twitter-text's config v3 weights, so CJK
    characters and emoji count 2, and every URL counts 23 whatever its length."""
    return int(parse_tweet(text).weightedLength)


def graphemes(text: str) -> int:
    """User-perceived characters (Unicode extended grapheme clusters), as Bluesky
    counts the 300 a post may have: a flag or a family emoji is one."""
    return len(regex.findall(r"\X", text))


def threads_length(text: str) -> int:
    """Characters as Threads counts its 500: each emoji counted as its UTF-8 bytes."""
    return sum(len(c.encode("utf-8")) if _EMOJI.search(c) else len(c)
               for c in regex.findall(r"\X", text))


def utf16_length(text: str) -> int:
    """UTF-16 code units, as the Telegram Bot API measures message text."""
    return len(text.encode("utf-16-le")) // 2


_RULES: dict[str, Callable[[str], int]] = {
    "x": weighted_length,
    "bluesky": graphemes,
    "threads": threads_length,
    "telegram": utf16_length,
}


def length_rule(kind: str) -> Callable[[str], int]:
    """The counting rule of a channel kind; plain characters where the platform
    counts those."""
    return _RULES.get(kind, len)
