"""YAML documents that remember where each value came from.

Config and runbook errors must name the file, line and column of the offending
key, so both are loaded through `Document`, which keeps the position of every
mapping key and sequence item alongside the plain Python data.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from switchboard.text import lone_surrogate, sanitised, surrogate_message

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a file, printed as `FILE:LINE:COL: path: message`."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class InvalidFile(Exception):
    """Raised with every problem found in one or more files."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def dotted(path: Path_) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


@dataclass
class Document:
    """Plain data from one YAML file plus the position of every node in it."""

    file: str
    data: Any
    marks: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def position(self, path: Path_) -> tuple[int, int]:
        # Fall back to the nearest ancestor that has a position (a missing key
        # is reported at the mapping that should have held it).
        probe = path
        while probe not in self.marks and probe:
            probe = probe[:-1]
        return self.marks.get(probe, (1, 1))

    def problem(self, path: Path_, message: str) -> None:
        line, column = self.position(path)
        self.problems.append(Problem(self.file, line, column, dotted(path), message))

    def raise_if_problems(self) -> None:
        if self.problems:
            raise InvalidFile(self.problems)


def load(path: Path) -> Document:
    """Parse a YAML file; syntax errors become problems with their position."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidFile([Problem(name, 1, 1, "", f"cannot read: {exc.strerror}")]) from exc
    except UnicodeDecodeError as exc:
        line = exc.object[:exc.start].count(b"\n") + 1
        raise InvalidFile([Problem(name, line, 1, "", f"not UTF-8 text (byte "
                                                      f"0x{exc.object[exc.start]:02x})")]) from exc
    return parse(text, name)


def parse(text: str, name: str) -> Document:
    try:
        node = _compose(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise InvalidFile([Problem(name, line, col, "", f"invalid YAML: {exc.problem}")]) from exc
    except yaml.YAMLError as exc:
        raise InvalidFile([Problem(name, 1, 1, "", f"invalid YAML: {exc}")]) from exc
    except RecursionError as exc:
        raise InvalidFile([Problem(name, 1, 1, "", _TOO_DEEP)]) from exc
    doc = Document(name, None)
    if node is not None:
        try:
            doc.data = _convert(node, (), doc)
        except _BadScalar as exc:
            mark = exc.node.start_mark
            raise InvalidFile([Problem(name, mark.line + 1, mark.column + 1, "",
                                       f"invalid YAML: {exc}")]) from exc
        except RecursionError as exc:  # `&a [*a]`: an alias inside the node it names
            raise InvalidFile([Problem(name, 1, 1, "", _TOO_DEEP)]) from exc
        except _TooLarge as exc:
            raise InvalidFile([Problem(name, 1, 1, "", f"invalid YAML: aliases expand to more "
                                                       f"than {MAX_NODES} values")]) from exc
    return doc


def _compose(text: str) -> yaml.Node | None:
    """libyaml's parser where it is installed (a config of 10,000 channels takes
    0.1 s instead of 1.3 s); a document it refuses is read again by PyYAML's own,
    so the message and position of a mistake are the same either way."""
    fast = getattr(yaml, "CSafeLoader", None)
    if fast is not None:
        try:
            return yaml.compose(text, Loader=fast)
        except (yaml.YAMLError, RecursionError):
            pass
    return yaml.compose(text, Loader=yaml.SafeLoader)


_TOO_DEEP = "invalid YAML: nested too deeply, or an alias refers to a node that contains it"


class _BadScalar(Exception):
    """A value no safe constructor accepts (`!foo x`, `!!int abc`, `!!timestamp 2024-13-45`)."""

    def __init__(self, node: yaml.Node, message: str) -> None:
        super().__init__(message)
        self.node = node


# A config or runbook has hundreds of nodes; aliases that expand past this are
# a "billion laughs" document, refused before it eats the CPU.
MAX_NODES = 100_000


class _TooLarge(Exception):
    pass


def _convert(node: yaml.Node, path: Path_, doc: Document) -> Any:
    if len(doc.marks) >= MAX_NODES:
        raise _TooLarge()
    doc.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(_scalar(key_node))
            key_mark = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            key = _checked_text(doc, path, key, key_mark, "a key ")
            if key in out:
                doc.marks[(*path, key)] = key_mark
                doc.problem((*path, key), "duplicate key")
            out[key] = _convert(value_node, (*path, key), doc)
            # Errors about a key point at the key itself, not at its value.
            doc.marks[(*path, key)] = key_mark
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), doc) for i, item in enumerate(node.value)]
    value = _scalar(node)
    if isinstance(value, str):
        return _checked_text(doc, path, value, doc.marks[path])
    return value


def _checked_text(doc: Document, path: Path_, value: str, mark: tuple[int, int],
                  what: str = "") -> str:
    """`value`, or a problem and the value made printable (later messages may quote it).

    YAML's "\\ud83d" escapes give lone surrogates, which no store or platform
    takes: they are refused here, with the position, not at the first
    declaration that uses them.
    """
    index = lone_surrogate(value)
    if index is None:
        return value
    doc.problems.append(Problem(doc.file, mark[0], mark[1], dotted(path),
                                what + surrogate_message(value, index)
                                + " (write characters beyond U+FFFF as \\UXXXXXXXX)"))
    return sanitised(value)


# One constructor per thread for every scalar: making a loader per value was a
# third of the time to read a large config.
_LOCAL = threading.local()


def _scalar(node: yaml.Node) -> Any:
    constructor = getattr(_LOCAL, "constructor", None)
    if constructor is None:
        constructor = _LOCAL.constructor = yaml.SafeLoader("")
    try:
        return constructor.construct_object(node, deep=True)
    except yaml.MarkedYAMLError as exc:
        raise _BadScalar(node, str(exc.problem)) from exc
    except Exception as exc:  # PyYAML's constructors raise ValueError, IndexError, ...
        raise _BadScalar(node, f"cannot read {str(node.value)[:40]!r} as {node.tag}") from exc
    finally:
        # Its caches would keep every node of every document read.
        constructor.constructed_objects.clear()
        constructor.recursive_objects.clear()


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


# Ten years: longer is a typo, and date arithmetic past the calendar would fail.
MAX_DURATION = timedelta(days=3650)


def parse_duration(value: object) -> timedelta:
    """`30s`, `10m`, `2h`, `1d` (a bare number is not accepted: units must be explicit)."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            seconds = float(match.group(1)) * _UNITS[match.group(2)]
            if seconds > MAX_DURATION.total_seconds():
                raise ValueError(f"duration {value!r} is longer than "
                                 f"{MAX_DURATION.days} days")
            return timedelta(seconds=seconds)
    raise ValueError(f"bad duration {value!r} (use a number with s, m, h or d, e.g. '30s', '10m')")


_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", float: "a number",
               list: "a list", dict: "a mapping"}


class Section:
    """Typed, checked access to one mapping of a document.

    Every accessor records a problem (never raises) and returns a fallback, so
    one pass over a file reports everything that is wrong with it.
    """

    def __init__(self, doc: Document, path: Path_, value: Any, keys: set[str],
                 required: frozenset[str] | set[str] = frozenset()) -> None:
        self.doc, self.path = doc, path
        self.ok = isinstance(value, dict)
        self.value: dict[str, Any] = value if isinstance(value, dict) else {}
        if not self.ok:
            doc.problem(path, f"must be a mapping, not {_kind(value)}")
            return
        for key in self.value:
            if key not in keys:
                doc.problem((*path, key), f"unknown key (allowed: {', '.join(sorted(keys))})")
        for key in sorted(required):
            if key not in self.value:
                doc.problem(path, f"missing required key '{key}'")

    def has(self, key: str) -> bool:
        return key in self.value

    def at(self, key: str) -> Path_:
        return (*self.path, key)

    def get(self, key: str, kind: type, default: Any = None) -> Any:
        if key not in self.value:
            return default
        value = self.value[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.doc.problem(self.at(key), f"must be {_TYPE_NAMES.get(kind, kind.__name__)}, "
                                           f"not {_kind(value)}")
            return default
        return value

    def duration(self, key: str, default: timedelta | None = None) -> timedelta | None:
        if key not in self.value:
            return default
        try:
            return parse_duration(self.value[key])
        except ValueError as exc:
            self.doc.problem(self.at(key), str(exc))
            return default

    def str_list(self, key: str, default: list[str] | None = None) -> list[str]:
        value = self.get(key, list, None)
        if value is None:
            return list(default or [])
        out = []
        for i, item in enumerate(value):
            if isinstance(item, str):
                out.append(item)
            else:
                self.doc.problem((*self.at(key), i), f"must be a string, not {_kind(item)}")
        return out

    def choice(self, key: str, choices: tuple[str, ...], default: str | None = None) -> str | None:
        value = self.get(key, str, None)
        if value is None:
            return default
        if value not in choices:
            self.doc.problem(self.at(key), f"must be one of {', '.join(choices)}, not {value!r}")
            return default
        return str(value)


def _kind(value: Any) -> str:
    if value is None:
        return "empty"
    return _TYPE_NAMES.get(type(value), type(value).__name__)
