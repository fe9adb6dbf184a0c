"""Whatever a runbook file holds, `load_runbooks` answers with runbooks or with
InvalidFile whose every problem says FILE:LINE:COL: -- never a traceback.

Templates are rendered at load (against a sample incident), so the template
pool below also throws every kind of render failure at the loader.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchboard.runbooks import ChannelInfo, load_runbooks
from tests.fuzz.strategies import (
    FUZZ,
    WRONG_VALUES,
    dump,
    loads_or_explains,
    mutated,
    spliced,
    wrong_values,
    yamlish_text,
)

CHANNELS = {"outbox": ChannelInfo("outbox", "public", 280),
            "social": ChannelInfo("social", "public", 500),
            "ops-chat": ChannelInfo("ops-chat", "internal", 4000),
            "duty": ChannelInfo("duty", "internal", 4000)}

# Every key and action of the runbook schema (design §3.4), valid as it stands.
BASE: dict[str, Any] = {
    "name": "drill",
    "title": "Drill",
    "severity": "major",
    "scope": ["outbox", "social"],
    "suppress": ["marketing"],
    "handover": {"role": "ops", "notify": ["ops-chat"],
                 "template": "{{ incident.id }}: ops has control of {{ incident.channels | "
                             "join(', ') }}"},
    "steps": [
        {"name": "holding", "at": "0m", "action": "post",
         "template": "We know: {{ incident.title }}. Next update by "
                     "{{ (now + duration('30m')) | time }}."},
        {"name": "retract", "at": "0m", "action": "retract", "published_within": "30m"},
        {"name": "remind", "every": "30m", "start": "15m", "action": "remind",
         "channels": ["ops-chat"]},
        {"name": "escalate", "at": "60m", "action": "notify", "channels": ["duty"],
         "template": "{{ incident.id }} open for {{ (now - incident.declared_at) | duration }}"},
        {"name": "hand", "at": "5m", "action": "handover", "channels": ["duty"]},
        {"name": "social-only", "at": "1m", "action": "post", "channels": ["social"],
         "template": "{% if signal %}{{ signal.get('service', 'a service') }}{% else %}"
                     "{{ incident.reason }}{% endif %}"},
    ],
    "resolve": {
        "auto": True, "quiet_period": "10m", "cooldown": "2h", "held_posts": "reschedule",
        "min_spacing": "5m",
        "steps": [{"name": "all-clear", "action": "post", "template": "All clear."},
                  {"action": "notify", "channels": ["ops-chat"], "template": "resolved"}],
    },
}

TEMPLATES = [
    "{{ incident.title }}", "{{ incident.nope }}", "{{ nope }}", "{{ signal.labels.x }}",
    "{{ signal.get('x') }}", "{{", "{% if %}", "{{ x }", "{% for %}", "{% endif %}",
    "{{ now | time }}", "{{ now | datetime }}", "{{ incident.title | time }}",
    "{{ now | duration }}", "{{ duration('bad') }}", "{{ duration(5) }}", "{{ 1/0 }}",
    "{{ ''.__class__ }}", "{{ cycler.__init__.__globals__ }}", "{{ lipsum.__globals__ }}",
    "{{ self._TemplateReference__context }}", "{{ range(1000000) | list }}",
    "{% include 'x' %}", "{% extends 'x' %}", "{% import 'x' as y %}{{ y }}",
    "{% macro r() %}{{ r() }}{% endmacro %}{{ r() }}", "{{ lipsum(3) }}",
    "{{ 'x' * 600 }}", "x" * 600, "line one\n{{ nope }}\nline three", "{# only a comment #}",
    " ", "", "{{ '' }}", "{{ signal.at | time }}", "{{ incident.declared_at | datetime }}",
    "{{ (now - incident.declared_at) | duration }}", "{{ now + 1 }}", "{{ {}.x }}",
    "{{ incident.channels[99] }}", "{{ signal.labels.update({}) }}", "\x00", "\u202e{{ x }}",
]
templates = st.sampled_from(TEMPLATES) | st.text(max_size=30)
values = templates | wrong_values | st.sampled_from(["0m", "1s", "-1m", "999999999d", "30x",
                                                     "post", "notify", "remind", "retract",
                                                     "handover", "ops-chat", "outbox",
                                                     "social", "duty", "nope"])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("runbook-fuzz")


def _load(workdir: Path, text: str, name: str = "drill") -> Any:
    directory = workdir / "runbooks"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir()
    path = directory / f"{name}.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    return loads_or_explains(lambda: load_runbooks(directory, CHANNELS), [path, directory])


def test_the_base_runbook_is_valid(workdir: Path) -> None:
    runbooks = _load(workdir, dump(BASE))
    assert runbooks is not None and len(runbooks["drill"].steps) == 6


@FUZZ
@given(text=st.text(max_size=400))
def test_arbitrary_text(workdir: Path, text: str) -> None:
    _load(workdir, text)


@FUZZ
@given(text=yamlish_text)
def test_yaml_ish_text(workdir: Path, text: str) -> None:
    _load(workdir, text)


@FUZZ
@given(document=mutated(BASE, values=values,
                        extra_keys=["at", "every", "start", "template", "channels", "action",
                                    "published_within", "cooldown", "steps", "name"]))
def test_the_schema_with_wrong_parts(workdir: Path, document: Any) -> None:
    _load(workdir, dump(document))


@FUZZ
@given(text=spliced(dump(BASE)))
def test_a_valid_file_with_damaged_syntax(workdir: Path, text: str) -> None:
    _load(workdir, text)


@FUZZ
@given(step=st.integers(0, len(BASE["steps"]) - 1), template=templates,
       style=st.sampled_from(["plain", "block", "folded"]))
def test_templates_in_every_style(workdir: Path, step: int, template: str, style: str) -> None:
    marked = {**BASE, "steps": [{**s, "template": "@@T@@"} if i == step else s
                                for i, s in enumerate(BASE["steps"])]}
    if style == "plain":
        scalar = dump({"t": template})[3:].rstrip("\n")  # as YAML would write it
    else:
        body = "\n".join(" " * 6 + line for line in template.splitlines() or [""])
        scalar = ("|" if style == "block" else ">") + "\n" + body
    _load(workdir, dump(marked).replace("'@@T@@'", scalar))


DURATION_SLOTS = [("steps", 0, "at"), ("steps", 1, "published_within"), ("steps", 2, "every"),
                  ("steps", 2, "start"), ("steps", 3, "at"), ("resolve", "quiet_period"),
                  ("resolve", "cooldown"), ("resolve", "min_spacing")]
durations = (st.sampled_from(["0m", "-1m", "0.5s", "1e3s", "10 m", "30x", "", "999999999d",
                              "99999999999999999999d", "2913000d", "3000000d"])
             | st.from_regex(r"\A-?[0-9]{1,22}(\.[0-9]{0,4})?[smhd]?\Z")
             | st.sampled_from(WRONG_VALUES))


@FUZZ
@given(slot=st.sampled_from(DURATION_SLOTS), value=durations)
def test_durations(workdir: Path, slot: tuple[Any, ...], value: Any) -> None:
    document = copy.deepcopy(BASE)
    target: Any = document
    for part in slot[:-1]:
        target = target[part]
    target[slot[-1]] = value
    _load(workdir, dump(document))


def test_an_offset_past_the_calendar_is_a_file_problem(workdir: Path) -> None:
    # 999999999d fits a timedelta but not a datetime: the sample render (and, at run
    # time, scheduling the step) overflows. The loader must say so as a problem.
    document = copy.deepcopy(BASE)
    document["steps"][0]["at"] = "999999999d"
    _load(workdir, dump(document))
