"""One complete, validated configuration: the config file and its runbooks.

`run`, `check`, `simulate` and a reload all load through `load_settings`, so
what `check` accepts is what the daemon runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from switchboard import config as config_module
from switchboard.config import Config
from switchboard.runbooks import Runbook, channel_infos, read_runbooks
from switchboard.yamldoc import InvalidFile, Problem


@dataclass(frozen=True)
class Settings:
    """One complete, validated configuration: the config file and its runbooks."""

    config: Config
    runbooks: dict[str, Runbook]


def load_settings(path: Path, create_tokens: bool = True) -> Settings:
    """Config and runbooks, validated together in one pass; InvalidFile lists every
    problem of the config, its runbooks and their templates, by file and line.
    `create_tokens=False` (check, simulate) writes no file."""
    config, doc = config_module.read(path, create_tokens=create_tokens)
    runbooks: dict[str, Runbook] = {}
    found: list[Problem] = []
    if config is not None:
        runbooks, found = read_runbooks(config.runbooks_dir, channel_infos(config.channels),
                                        config.timezone)
        # A rule naming a runbook whose file has problems is reported there, not twice.
        names = set(runbooks) | {p.stem for p in config.runbooks_dir.glob("*.yaml")}
        config_module.check_runbook_references(doc, config, names)
    problems = doc.problems + found
    if problems:
        raise InvalidFile(sorted(problems, key=lambda p: (p.file, p.line, p.column)))
    assert config is not None
    return Settings(config, runbooks)
