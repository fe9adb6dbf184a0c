"""The CLI as people and scripts use it: help that reads as a manual, JSON errors
for scripts, a quiet end when the reader of a pipe goes away, a 401 that says
where tokens come from, and a `check` that reports everything in one pass."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from switchboard.cli import parser
from tests.daemon import TOKENS, DaemonProcess, running


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    yield from running(tmp_path_factory.mktemp("cli"))


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    return subprocess.run([sys.executable, "-m", "switchboard", *args], capture_output=True,
                          text=True, timeout=60, env={**clean, **(env or {})})


def commands(p: argparse.ArgumentParser, path: tuple[str, ...] = ()
             ) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, p
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from commands(child, (*path, name))


def squash(text: str) -> str:
    return " ".join(text.split())


def test_every_command_and_option_has_a_description_in_its_help() -> None:
    found = list(commands(parser()))
    assert len(found) > 15
    with ThreadPoolExecutor(4) as pool:
        helps = list(pool.map(lambda item: cli(*item[0], "--help"), found))
    for (path, p), done in zip(found, helps, strict=True):
        assert done.returncode == 0, (path, done.stderr)
        page = squash(done.stdout)
        assert p.description, f"`switchboard {' '.join(path)}` has no description"
        assert squash(p.description) in page
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    assert choice.help, f"{path} {choice.dest}: no summary"
                    assert squash(choice.help) in page
                continue
            assert action.help, f"`switchboard {' '.join(path)}` {action.dest}: no help"
            assert squash(action.help % {"default": action.default}) in page


def test_json_errors_are_json_on_stdout_with_the_exit_code(daemon: DaemonProcess) -> None:
    env = {"SWITCHBOARD_URL": daemon.url, "SWITCHBOARD_TOKEN": TOKENS["marketing"]}
    refused = cli("post", "release", "424242", "--json", env=env)
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["error"] == {"code": "not_found",
                                                   "message": "404: no post 424242"}
    assert refused.stderr == ""

    unreachable = cli("status", "--json", "--url", "http://127.0.0.1:9")
    assert unreachable.returncode == 3
    assert json.loads(unreachable.stdout)["error"]["code"] == "unreachable"

    usage = cli("incident", "void", "INC-1", "--json", env=env)
    assert usage.returncode == 2
    error = json.loads(usage.stdout)["error"]
    assert error["code"] == "usage" and "--reason" in error["message"]


def test_a_closed_pipe_ends_quietly(daemon: DaemonProcess) -> None:
    posts = [{"channel": "outbox", "at": "+1d", "text": f"Offer {i}: " + "x" * 80}
             for i in range(1000)]
    daemon.ok("POST", "/api/v1/posts", posts, role="marketing")
    env = {**os.environ, "SWITCHBOARD_URL": daemon.url, "SWITCHBOARD_TOKEN": TOKENS["viewer"]}
    env.pop("SWITCHBOARD_TOKEN_FILE", None)
    command = f"{sys.executable} -m switchboard post list --all | head -1"
    done = subprocess.run(["bash", "-c", command],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.stdout.split() == ["ID", "STATE", "CHANNEL", "KIND", "DUE", "INCIDENT", "TEXT"]
    assert done.stderr == "", done.stderr


def test_a_401_says_where_tokens_come_from(daemon: DaemonProcess) -> None:
    done = cli("status", env={"SWITCHBOARD_URL": daemon.url, "SWITCHBOARD_TOKEN": "wrong"})
    assert done.returncode == 1
    assert "401" in done.stderr
    assert "SWITCHBOARD_TOKEN_FILE" in done.stderr and "var/tokens/" in done.stderr


CONFIG_WITH_PROBLEMS = """\
listen: 127.0.0.1:8650
state_dir: ./var
timezone: Europe/Londn
runbooks_dir: runbooks
channels:
  - {id: outbox, kind: outbox, path: ./var/outbox.jsonl}
  - {id: ops-chat, kind: console, audience: internal}
  - {id: spare, kind: carrier-pigeon}
"""

RUNBOOK_WITH_PROBLEMS = """\
name: outage
title: Outage
scope: all
handover:
  notify: [ops-chat]
steps:
  - name: holding-statement
    at: 0m
    action: post
    template: "We know: {{ incident.titel }}"
  - name: wave
    at: 5m
    action: wave
"""


def test_check_reports_config_runbook_and_template_problems_in_one_pass(
        tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "runbooks").mkdir()
    config = tmp_path / "config" / "switchboard.yaml"
    config.write_text(CONFIG_WITH_PROBLEMS)
    runbook = tmp_path / "runbooks" / "outage.yaml"
    runbook.write_text(RUNBOOK_WITH_PROBLEMS)

    done = cli("check", "-c", str(config))

    assert done.returncode == 1
    lines = done.stdout.splitlines()
    where = [(line.split(":")[0], int(line.split(":")[1])) for line in lines]
    assert where == sorted(where), "sorted by file, then line"
    assert where == [(str(config), 3), (str(config), 8), (str(runbook), 10),
                     (str(runbook), 13)], lines
    assert "unknown timezone 'Europe/Londn'" in lines[0]
    assert "unknown channel kind 'carrier-pigeon'" in lines[1]
    assert "titel" in lines[2]
    assert "wave" in lines[3]
