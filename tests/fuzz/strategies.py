"""Shared Hypothesis settings and strategies for the loader and API fuzzers.

Examples per test: SWITCHBOARD_FUZZ_EXAMPLES (default 200 so CI stays fast;
docs/reliability.md ## Fuzzing records a long run). SWITCHBOARD_FUZZ_SKIP_EXPLICIT=1
skips the pinned `@example`s (known findings), so a long hunt looks past them.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from switchboard.yamldoc import InvalidFile

EXAMPLES = int(os.environ.get("SWITCHBOARD_FUZZ_EXAMPLES", "200"))
_PHASES = [p for p in Phase
           if not (p is Phase.explicit and os.environ.get("SWITCHBOARD_FUZZ_SKIP_EXPLICIT"))]
FUZZ = settings(
    max_examples=EXAMPLES, phases=_PHASES,
    deadline=None, database=None,  # no .hypothesis/ left in the working tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much],
)

# Pieces of YAML syntax: glued together they make text a YAML parser takes seriously.
YAML_PIECES = [
    ":", ": ", "- ", "\n", "\n  ", "\n    ", "{", "}", "[", "]", ",", "? ", "|", ">", "|-",
    "'", '"', "#", "&a ", "*a", "!!str ", "!!int ", "!!float ", "!!binary ", "!!timestamp ",
    "!!python/object:os.system ", "!custom ", "!!set ", "!!omap ", "%YAML 1.1\n", "---\n",
    "...\n", "<<: *a", "\t", "\x00", "\ufeff", "~", "null", "true", "no", "0x1F", "0o17",
    "1e400", ".nan", "-.inf", "2024-13-45", "12:30:00", "10m", "30s", "2h", "-5m", "1d",
    "99999999999999999999d", "channels", "feeds", "access", "id", "kind", "outbox", "webhook",
    "steps", "template", "{{ incident.title }}", "{%", "%}", "{{", "}}", "at", "every",
]
yamlish_text = st.lists(st.sampled_from(YAML_PIECES) | st.text(max_size=6),
                        max_size=40).map("".join)

# Values of the wrong shape, or right shape with a wrong content, for any slot.
WRONG_VALUES: list[Any] = [
    None, True, False, 0, -1, 1, 65536, 10**30, 1.5, -0.0, float("inf"), "", " ", "x",
    "0.0.0.0:99999", "[::1]:8650", "host:", ":80", "10x", "-5m", "0s", "1e3s", "10 m",
    "99999999999999999999d", "999999999d", "1000000000d", "Mars/Olympus", "UTC", "../..",
    "viewer", "root", "marketing", "operational", "review", "all", "critical", "public",
    "internal", [], [None], ["x"], [1, 2], {}, {"a": 1}, {"regex": "("}, {"regex": "a+"},
    date(2024, 1, 1), datetime(2024, 1, 1, 9, 0), b"\x00\xff", "{{", "{{ 1/0 }}",
    "{{ ''.__class__ }}", "\x00", "\u202e", "a" * 300,
]
wrong_values = st.sampled_from(WRONG_VALUES) | st.text(max_size=12) | st.integers()


def slots(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, Any]]:
    """Every (container, key) in a document, to aim a mutation at."""
    if isinstance(value, dict):
        return [(value, k) for k in value] + [s for v in value.values() for s in slots(v)]
    if isinstance(value, list):
        return [(value, i) for i in range(len(value))] + [s for v in value for s in slots(v)]
    return []


@st.composite
def mutated(draw: st.DrawFn, base: Any, values: st.SearchStrategy[Any] = wrong_values,
            extra_keys: list[str] | None = None) -> Any:
    """`base` with one to five members replaced, removed, duplicated or added."""
    document = copy.deepcopy(base)
    keys = st.sampled_from(extra_keys or ["unknown", "token", "secret"]) | st.text(max_size=8)
    for _ in range(draw(st.integers(1, 5))):
        targets = slots(document)
        if not targets:
            return copy.deepcopy(draw(values))
        container, key = draw(st.sampled_from(targets))
        action = draw(st.integers(0, 4))
        if action == 0 and isinstance(container, dict):
            del container[key]
        elif action == 1 and isinstance(container, dict):
            # Copies: the sampled values are shared objects, and a mutation must
            # neither change them nor put a container inside itself.
            container[draw(keys)] = copy.deepcopy(draw(values))
        elif action == 2 and isinstance(container, list):
            container.append(copy.deepcopy(container[key]))  # duplicate ids, names
        else:
            container[key] = copy.deepcopy(draw(values))
    return document


@st.composite
def spliced(draw: st.DrawFn, text: str) -> str:
    """A valid file's text with a few YAML pieces cut, inserted or overwritten."""
    out = text
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(out)))
        piece = draw(st.sampled_from(YAML_PIECES))
        if draw(st.booleans()):
            out = out[:at] + piece + out[at:]
        else:
            out = out[:at] + piece + out[at + draw(st.integers(1, 20)):]
    return out


def dump(document: Any) -> str:
    # allow_unicode keeps odd characters as they are, so the loader sees them raw.
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def where_pattern(path: Path) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(str(path))}:[1-9][0-9]*:[1-9][0-9]*: ")


def loads_or_explains(load: Callable[[], Any], files: list[Path]) -> Any:
    """Call `load`; it must return or raise InvalidFile whose problems each say FILE:LINE:COL:.

    Anything else (a traceback from deep inside) escapes and fails the test.
    """
    try:
        return load()
    except InvalidFile as exc:
        assert exc.problems, "InvalidFile with no problem in it"
        patterns = [where_pattern(f) for f in files]
        for problem in exc.problems:
            text = str(problem)
            assert any(p.match(text) for p in patterns), text
            assert problem.message.strip(), text
        return None
