"""XML from feeds, parsed only through defusedxml.

Entity declarations (billion laughs) and external entities (XXE reading
`file:///etc/passwd`) are refused outright rather than expanded with a limit:
no incident feed needs them, so any document carrying them is hostile or broken.
"""

from __future__ import annotations

from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree
from defusedxml import DefusedXmlException

from switchboard.feeds.payload import malformed

# expat error codes that mean the document stopped early: a cut-off body.
TRUNCATED_CODES = frozenset({3, 5, 6, 20})  # no element, unclosed token/char/CDATA


class NotWellFormed(Exception):
    """Raised instead of FeedError when the caller may fall back to a lenient parser."""

    def __init__(self, message: str, truncated: bool) -> None:
        super().__init__(message)
        self.truncated = truncated


def parse(kind: str, body: bytes, forbid_dtd: bool) -> Element:
    """The root element; FeedError("malformed") on anything but a safe, well-formed document."""
    try:
        return strict_parse(kind, body, forbid_dtd)
    except NotWellFormed as exc:
        raise malformed(kind, f"not well-formed XML: {exc}") from None


def strict_parse(kind: str, body: bytes, forbid_dtd: bool) -> Element:
    """As `parse`, but a merely sloppy document raises NotWellFormed.

    Hostile constructs still raise FeedError: they must never reach a
    lenient parser.
    """
    if not body.strip():
        raise malformed(kind, "empty body")
    try:
        root: Element = defusedxml.ElementTree.fromstring(
            body, forbid_dtd=forbid_dtd, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise malformed(kind, f"refused XML with a DTD or entity declaration "
                              f"({type(exc).__name__})") from None
    except ParseError as exc:
        raise NotWellFormed(str(exc), getattr(exc, "code", None) in TRUNCATED_CODES) from None
    except LookupError as exc:  # an encoding Python does not know
        raise NotWellFormed(str(exc), truncated=False) from None
    return root


def local_name(tag: object) -> str:
    """`{namespace}name` -> `name`; comments and processing instructions have no str tag."""
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def namespace(tag: object) -> str:
    return tag[1:].partition("}")[0] if isinstance(tag, str) and tag.startswith("{") else ""
