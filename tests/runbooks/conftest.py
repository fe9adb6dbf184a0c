"""Helpers for runbook tests: a known set of channels and tiny runbooks in tmp_path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from switchboard.runbooks import ChannelInfo, Runbook, check_runbooks, load_runbooks

CHANNELS = {
    "outbox": ChannelInfo("outbox", "public", 280),
    "mastodon": ChannelInfo("mastodon", "public", 500),
    "short": ChannelInfo("short", "public", 100),
    "ops-chat": ChannelInfo("ops-chat", "internal", 10000),
}

# A clean runbook the validation tests change one thing in.
BASE = """\
name: rb
title: Test incident
handover:
  notify: [ops-chat]
steps:
  - name: hold
    at: 0m
    action: post
    channels: [outbox]
    template: "We know: {{ incident.title }}"
"""


class Runbooks:
    def __init__(self, root: Path) -> None:
        self.dir = root / "runbooks"
        self.dir.mkdir()

    def write(self, text: str, name: str = "rb") -> Path:
        path = self.dir / f"{name}.yaml"
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    def problems(self, text: str | None = None, name: str = "rb") -> list[str]:
        if text is not None:
            self.write(text, name)
        return [str(p) for p in check_runbooks(self.dir, CHANNELS)]

    def load(self, text: str | None = None, name: str = "rb") -> Runbook:
        if text is not None:
            self.write(text, name)
        return load_runbooks(self.dir, CHANNELS)[name]


@pytest.fixture
def books(tmp_path: Path) -> Runbooks:
    return Runbooks(tmp_path)
