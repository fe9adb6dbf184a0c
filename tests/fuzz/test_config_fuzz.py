"""Whatever the config file holds, `config.load` answers with a Config or with
InvalidFile whose every problem says FILE:LINE:COL: -- never a traceback.

A traceback here is what `switchboard check` would print to the operator, and
what would escape a SIGHUP reload (which catches InvalidFile).
"""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchboard import config
from tests.daemon import ROOT
from tests.fuzz.strategies import (
    FUZZ,
    YAML_PIECES,
    dump,
    loads_or_explains,
    mutated,
    spliced,
    wrong_values,
    yamlish_text,
)

SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
ENV = {name: f"value-of-{name}" for name in (
    "FUZZ_ADMIN", "FUZZ_METRICS", "FUZZ_HOOK", "FUZZ_X1", "FUZZ_X2", "FUZZ_X3", "FUZZ_MASTO",
    "FUZZ_FEED", "FUZZ_PD")}
ENV["FUZZ_HOOK"] = "http://127.0.0.1:9/services/hook"

# Every section and kind of the schema (design §4.3), valid as it stands.
BASE: dict[str, Any] = {
    "listen": "127.0.0.1:8650",
    "state_dir": "./var",
    "timezone": "Europe/London",
    "runbooks_dir": "runbooks",
    "max_lateness": "10m",
    "max_body_bytes": 1048576,
    "metrics": {"token_env": "FUZZ_METRICS"},
    "access": [
        {"name": "admin", "role": "admin", "token_env": "FUZZ_ADMIN"},
        {"name": "ops", "role": "ops", "token_file": "tokens/ops.token", "generate": True},
        {"name": "viewer", "role": "viewer", "token_sha256": SHA256},
    ],
    "channels": [
        {"id": "outbox", "kind": "outbox", "path": "./var/outbox.jsonl"},
        {"id": "console", "kind": "console", "audience": "internal"},
        {"id": "ops-chat", "kind": "webhook", "audience": "internal", "url_env": "FUZZ_HOOK",
         "headers": {"X-Team": "ops"}, "max_retries": 2, "retry_base": "1s",
         "retry_max": "30s", "rate_limit_wait": "60s", "rate_limit_max_wait": "15m",
         "timeout": 5},
        {"id": "x-main", "kind": "x", "max_length": 280, "api_url": "http://127.0.0.1:9",
         "credentials": {"consumer_key_env": "FUZZ_X1", "consumer_secret_env": "FUZZ_X2",
                         "access_token_env": "FUZZ_X3",
                         "access_token_secret_file": "x.secret"}},
        {"id": "masto", "kind": "mastodon", "api_base_url": "http://127.0.0.1:9",
         "access_token_env": "FUZZ_MASTO"},
    ],
    "feeds": [
        {"id": "am", "kind": "alertmanager", "token_env": "FUZZ_FEED",
         "rules": [{"match": {"severity": "critical", "service": ["rail", "bus"],
                              "team": {"regex": "ops-.*"}},
                    "runbook": "rail-disruption", "channels": ["outbox"], "title": "Rail",
                    "severity": "major"}]},
        {"id": "pd", "kind": "pagerduty", "secret_env": "FUZZ_PD",
         "rules": [{"match": {"urgency": "high"}, "runbook": "service-outage"}]},
        {"id": "js", "kind": "json", "token_sha256": SHA256, "secret_file": "json.secret",
         "signature_header": "X-Sig", "fields": {"key": "id", "status": "state"}},
        {"id": "cap", "kind": "cap", "url": "http://127.0.0.1:9/cap.xml", "every": "60s",
         "timeout": 10},
        {"id": "status", "kind": "statuspage", "url": "http://127.0.0.1:9/unresolved.json"},
    ],
}
RUNBOOKS = {"rail-disruption", "service-outage"}
DURATION_SLOTS = [("max_lateness",), ("channels", 2, "retry_base"), ("channels", 2, "retry_max"),
                  ("channels", 2, "rate_limit_wait"), ("channels", 2, "rate_limit_max_wait"),
                  ("feeds", 3, "every")]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("config-fuzz")
    (path / "x.secret").write_text("x-access-secret\n")
    (path / "json.secret").write_text("json-hmac-secret\n")
    yield path


def _load(workdir: Path, text: str, runbooks: set[str] | None = None) -> Any:
    path = workdir / "switchboard.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    return loads_or_explains(lambda: config.load(path, env=ENV, runbook_names=runbooks), [path])


def test_the_base_document_is_valid(workdir: Path) -> None:
    loaded = _load(workdir, dump(BASE), RUNBOOKS)
    assert loaded is not None and len(loaded.channels) == 5 and len(loaded.feeds) == 5


@FUZZ
@given(text=st.text(max_size=400))
def test_arbitrary_text(workdir: Path, text: str) -> None:
    _load(workdir, text)


@FUZZ
@given(text=yamlish_text)
def test_yaml_ish_text(workdir: Path, text: str) -> None:
    _load(workdir, text, RUNBOOKS)


@FUZZ
@given(document=mutated(BASE, extra_keys=["token", "secret", "url", "password", "listen",
                                          "generate", "fields", "rules", "match"]),
       runbooks=st.sampled_from([None, RUNBOOKS, set()]))
def test_the_schema_with_wrong_parts(workdir: Path, document: Any,
                                     runbooks: set[str] | None) -> None:
    _load(workdir, dump(document), runbooks)


@FUZZ
@given(text=spliced(dump(BASE)))
def test_a_valid_file_with_damaged_syntax(workdir: Path, text: str) -> None:
    _load(workdir, text, RUNBOOKS)


durations = (st.sampled_from([p for p in YAML_PIECES if p.strip()])
             | st.from_regex(r"\A\s?-?[0-9\u0660-\u0669]{1,25}(\.[0-9]{0,5})?\s?[smhdwx]?\s?\Z")
             | wrong_values)


@FUZZ
@given(slot=st.sampled_from(DURATION_SLOTS), value=durations)
def test_durations(workdir: Path, slot: tuple[Any, ...], value: Any) -> None:
    document = copy.deepcopy(BASE)
    target: Any = document
    for part in slot[:-1]:
        target = target[part]
    target[slot[-1]] = value
    _load(workdir, dump(document), RUNBOOKS)


@pytest.mark.parametrize("key", ["token_file", "secret_file", "url_file"])
def test_a_file_name_with_a_nul_byte_is_a_file_problem(workdir: Path, key: str) -> None:
    # open() refuses such a name with ValueError, not OSError (found by the fuzzer).
    document = copy.deepcopy(BASE)
    if key == "token_file":
        document["access"][0] = {"name": "admin", "role": "admin", "token_file": "a\x00b"}
    elif key == "secret_file":
        document["feeds"][1] = {"id": "pd", "kind": "pagerduty", "secret_file": "a\x00b"}
    else:
        document["channels"][2] = {"id": "ops-chat", "kind": "webhook", "url_file": "a\x00b"}
    _load(workdir, dump(document), RUNBOOKS)


def test_alias_expansion_is_bounded(workdir: Path) -> None:
    # "Billion laughs": six levels of ten aliases in 393 bytes. Loading must refuse it
    # (or finish) promptly; unbounded expansion takes minutes and grows memory.
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 7)]
    path = workdir / "laughs.yaml"
    path.write_text("\n".join(lines) + "\n")
    probe = ("import sys; from pathlib import Path; from switchboard import config\n"
             "from switchboard.yamldoc import InvalidFile\n"
             "try: config.load(Path(sys.argv[1]), env={})\n"
             "except InvalidFile: pass\n")
    try:
        subprocess.run([sys.executable, "-c", probe, str(path)], timeout=20, check=True,
                       capture_output=True, cwd=ROOT)
    except subprocess.TimeoutExpired:
        pytest.fail("393 bytes of YAML aliases kept the loader busy for over 20 s")
