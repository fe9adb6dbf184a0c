"""Reading untrusted payload values without tripping over their shape.

Feeds send whatever they like; these accessors turn a wrong shape into
`FeedError("malformed")` with a message naming the field, so parsers never
leak a KeyError or TypeError to the caller.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, tzinfo
from typing import Any

from switchboard.feeds.signal import FeedError

# Label values are what rules match on; a huge one is no use to a rule and
# would bloat every stored signal.
MAX_LABEL_CHARS = 4096


def malformed(kind: str, message: str) -> FeedError:
    return FeedError("malformed", f"malformed {kind} payload: {message}", 400)


def load_json(kind: str, body: bytes) -> Any:
    if not body.strip():
        raise malformed(kind, "empty body")
    try:
        return json.loads(body)
    except UnicodeDecodeError as exc:
        raise malformed(kind, f"not UTF-8 text ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise malformed(kind, f"not JSON: {exc.msg} at line {exc.lineno} "
                              f"column {exc.colno}") from None
    except ValueError as exc:  # e.g. an integer longer than Python's 4300-digit limit
        raise malformed(kind, f"not usable JSON: {exc}") from None
    except RecursionError:
        raise malformed(kind, "JSON nested too deeply") from None


def as_object(kind: str, value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise malformed(kind, f"{what} must be an object, not {type_name(value)}")
    return value


def as_list(kind: str, value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise malformed(kind, f"{what} must be a list, not {type_name(value)}")
    return value


def loose_object(value: Any) -> dict[str, Any]:
    """An optional nested object; anything else (null, absent, wrong type) is empty."""
    return value if isinstance(value, dict) else {}


def loose_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def field(kind: str, obj: dict[str, Any], name: str, what: str) -> str:
    """A required non-empty scalar member, as text."""
    value = scalar_text(obj.get(name))
    if not value:
        raise malformed(kind, f"{what} needs a non-empty {name!r}")
    return value


def scalar_text(value: Any) -> str | None:
    """Text of a JSON scalar; None for null, objects and lists."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)[:MAX_LABEL_CHARS]
    return None


def string_map(kind: str, value: Any, what: str) -> dict[str, str]:
    """An object of scalars as labels; null is an empty map, nested values are dropped."""
    if value is None:
        return {}
    obj = as_object(kind, value, what)
    # The common case (Alertmanager labels): short strings only, taken as they are.
    if all(type(item) is str and len(item) <= MAX_LABEL_CHARS for item in obj.values()):
        return dict(obj)
    out: dict[str, str] = {}
    for name, item in obj.items():
        text = scalar_text(item)
        if text is not None:
            out[str(name)] = text
    return out


def parse_time(value: Any, assume: tzinfo = UTC) -> datetime | None:
    """An RFC 3339 / ISO 8601 time, or None when absent, unparseable or Go's zero time.

    A time without offset is taken to be in `assume`.
    """
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if when.year <= 1:  # Alertmanager's "0001-01-01T00:00:00Z" means "not set"
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=assume)


def type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(value),
                                                                         type(value).__name__)
