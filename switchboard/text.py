"""Text that can be stored and sent: valid Unicode, without lone surrogates.

JSON (`"\\udc80"`), YAML (`"\\ud83d"`) and command lines holding bytes that
are not UTF-8 all produce Python strings with lone surrogates. SQLite, the
log and every platform refuse to encode them, so such a string accepted at
the door fails later, where nobody sees why. Callers refuse it (API bodies,
command-line arguments, config and runbook files) or, for what feeds send,
replace each one with U+FFFD so the signal still declares.
"""

from __future__ import annotations

from typing import Any

REPLACEMENT = "\ufffd"


def lone_surrogate(value: str) -> int | None:
    """The index of the first lone surrogate in `value`, or None when it is clean."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def surrogate_message(value: str, index: int) -> str:
    return (f"is not valid Unicode text: it holds a lone surrogate "
            f"(\\u{ord(value[index]):04x} at character {index + 1})")


def first_bad_text(value: Any) -> tuple[str, str] | None:
    """(where, message) for the first string in a JSON value that holds a lone surrogate.

    Iterative: a body nested as deep as the JSON parser allows must not
    overflow the stack here.
    """
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            index = lone_surrogate(item)
            if index is not None:
                return path or "the body", surrogate_message(item, index)
        elif isinstance(item, dict):
            children = []
            for key, child in item.items():
                index = lone_surrogate(key)
                if index is not None:
                    return f"a key in {path or 'the body'}", surrogate_message(key, index)
                name = key[:40]
                children.append((f"{path}.{name}" if path else name, child))
            stack.extend(reversed(children))
        elif isinstance(item, list):
            stack.extend(reversed([(f"{path}[{i}]", child) for i, child in enumerate(item)]))
    return None


def sanitised(value: str) -> str:
    """`value` with each lone surrogate replaced by U+FFFD (the common case returns it as is)."""
    if lone_surrogate(value) is None:
        return value
    return "".join(REPLACEMENT if 0xD800 <= ord(c) <= 0xDFFF else c for c in value)


def decimal(value: str, digits: int = 18) -> int | None:
    """`value` as a whole number when it is 1 to `digits` ASCII digits, else None.

    `str.isdigit` alone accepts superscripts and other Unicode digits, which `int()` then
    refuses or reads as something else; 18 digits stay within SQLite's 64 bits.
    """
    if value.isascii() and value.isdigit() and len(value) <= digits:
        return int(value)
    return None
