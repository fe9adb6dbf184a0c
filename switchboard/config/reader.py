"""Reading the file: the top level, access tokens, teams, people and limits."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from switchboard import yamldoc
from switchboard.config.channels import _ChannelSections
from switchboard.config.feeds import _FeedSections
from switchboard.config.model import (
    APPROVAL,
    MIN_LATENESS,
    ROLES,
    STORE_BACKENDS,
    AccessToken,
    Config,
    StoreConfig,
    Team,
    unknown_channel_message,
)
from switchboard.config.sections import _owner
from switchboard.text import decimal
from switchboard.yamldoc import Document, Path_, Section


def load(path: Path, env: dict[str, str] | None = None,
         runbook_names: set[str] | None = None, create_tokens: bool = True) -> Config:
    """Load and validate; `runbook_names` (when known) checks rule references;
    `create_tokens` writes the `generate: true` token files that are missing."""
    doc = yamldoc.load(path)
    config = _Reader(doc, path, os.environ if env is None else env, create_tokens).read()
    if runbook_names is not None:
        check_runbook_references(doc, config, runbook_names)
    doc.raise_if_problems()
    assert config is not None
    return config


def read(path: Path, env: dict[str, str] | None = None,
         create_tokens: bool = True) -> tuple[Config | None, Document]:
    """Read without raising, for checks that go on to the runbooks: the config as far
    as it could be read (None when the top level is unusable) and the document, whose
    `problems` list what is wrong. Raises InvalidFile only when the YAML cannot be
    parsed at all."""
    doc = yamldoc.load(path)
    return _Reader(doc, path, os.environ if env is None else env, create_tokens).read(), doc


def _valid_dsn(dsn: str) -> bool:
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    try:
        conninfo_to_dict(dsn)
    except ProgrammingError:
        return False
    return True


def check_runbook_references(doc: Document, config: Config | None, names: set[str]) -> None:
    if config is None:
        return
    known = ", ".join(sorted(names)) or "none"
    for i, feed in enumerate(config.feeds):
        for j, rule in enumerate(feed.rules):
            if rule.runbook not in names:
                doc.problem(("feeds", i, "rules", j, "runbook"),
                            f"no runbook named {rule.runbook!r} (runbooks: {known})")


class _Reader(_ChannelSections, _FeedSections):
    def read(self) -> Config | None:
        top = Section(self.doc, (), self.doc.data,
                      {"listen", "state_dir", "timezone", "runbooks_dir", "max_lateness",
                       "access", "channels", "feeds", "metrics", "max_body_bytes", "teams",
                       "people", "store"},
                      required={"channels"})
        if not top.ok:
            return None
        host, port = self._listen(top)
        channels = self._channels(top)
        channel_ids = {c.id for c in channels}
        return Config(
            path=self.path,
            listen_host=host,
            listen_port=port,
            state_dir=self._path(top.get("state_dir", str, "./var")),
            timezone=self._timezone(top),
            runbooks_dir=self._path(top.get("runbooks_dir", str, "runbooks")),
            max_lateness=self._max_lateness(top),
            access=self._access(top),
            channels=channels,
            feeds=self._feeds(top, channel_ids),
            metrics_token_sha256=self._metrics(top),
            max_body_bytes=top.get("max_body_bytes", int, 1024 * 1024),
            teams=self._teams(top, [c.id for c in channels]),
            admin_password_file=self._people(top),
            store=self._store(top),
        )

    def _teams(self, top: Section, channel_ids: list[str]) -> tuple[Team, ...]:
        out: list[Team] = []
        owner: dict[str, str] = {}
        for i, item in enumerate(top.get("teams", list, [])):
            path: Path_ = ("teams", i)
            sec = Section(self.doc, path, item, {"id", "channels", "approval"},
                          required={"id", "channels"})
            if not sec.ok:
                continue
            team_id = sec.get("id", str, "")
            if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", team_id):
                self.doc.problem(sec.at("id"), f"team id {team_id!r} must be lower-case "
                                               "letters, digits, '.', '_' or '-'")
            if any(t.id == team_id for t in out):
                self.doc.problem(sec.at("id"), f"duplicate team id {team_id!r}")
            listed = sec.str_list("channels")
            for k, cid in enumerate(listed):
                where = (*path, "channels", k)
                if cid not in channel_ids:
                    self.doc.problem(where, unknown_channel_message(cid, set(channel_ids)))
                elif owner.get(cid, team_id) != team_id:
                    # Two owners: whose members may post there would be a guess.
                    self.doc.problem(where, f"channel {cid!r} is already in team "
                                            f"{owner[cid]!r}: a channel belongs to one team")
                else:
                    owner[cid] = team_id
            approval = sec.choice("approval", APPROVAL, "none")
            out.append(Team(team_id, tuple(dict.fromkeys(listed)), approval == "required"))
        return tuple(out)

    def _people(self, top: Section) -> Path | None:
        if not top.has("people"):
            return None
        sec = Section(self.doc, ("people",), top.value["people"], {"admin_password_file"})
        ref = sec.get("admin_password_file", str) if sec.ok else None
        return None if ref is None else self._path(ref)

    def _store(self, top: Section) -> StoreConfig:
        """`store: {backend: sqlite}` or `{backend: postgresql, dsn_env|dsn_file}`;
        read only (a check never connects), the connection string never shown."""
        if not top.has("store"):
            return StoreConfig()
        sec = Section(self.doc, ("store",), top.value["store"],
                      {"backend", "dsn_env", "dsn_file", "dsn"}, required={"backend"})
        if not sec.ok:
            return StoreConfig()
        backend = sec.choice("backend", STORE_BACKENDS, "sqlite") or "sqlite"
        if backend == "sqlite":
            for key in ("dsn", "dsn_env", "dsn_file"):
                if sec.has(key):
                    self.doc.problem(sec.at(key), f"{key} is for backend postgresql; "
                                                  "sqlite keeps its file in state_dir")
            return StoreConfig()
        dsn = self._secret(sec, "dsn")
        if dsn is not None and not _valid_dsn(dsn):
            # psycopg's own message may quote the string, password included.
            key = "dsn_env" if sec.has("dsn_env") else "dsn_file"
            self.doc.problem(sec.at(key), "not a valid PostgreSQL connection string (libpq "
                                          "`host=... dbname=...` or a postgresql:// URL)")
        return StoreConfig("postgresql", dsn)

    def _max_lateness(self, top: Section) -> timedelta:
        default = timedelta(minutes=10)
        value = top.duration("max_lateness", default)
        if value is None:  # already reported as a bad duration
            return default
        if value < MIN_LATENESS:
            self.doc.problem(top.at("max_lateness"), "must be at least 1s: a post later than "
                                                     "this is recorded missed instead of sent, "
                                                     "so every post would be missed")
        return value

    def _listen(self, top: Section) -> tuple[str, int]:
        value = top.get("listen", str, "127.0.0.1:8650")
        host, _, port = value.rpartition(":")
        number = decimal(port, 5)
        if not host or number is None or number >= 65536:
            self.doc.problem(top.at("listen"), f"must be HOST:PORT, not {value!r}")
            return "127.0.0.1", 8650
        return host.strip("[]"), number

    def _timezone(self, top: Section) -> ZoneInfo:
        name = top.get("timezone", str, "UTC")
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            self.doc.problem(top.at("timezone"), f"unknown timezone {name!r}")
            return ZoneInfo("UTC")

    def _access(self, top: Section) -> tuple[AccessToken, ...]:
        out: list[AccessToken] = []
        names: set[str] = set()
        owners: list[tuple[str, int, str]] = []
        for i, item in enumerate(top.get("access", list, [])):
            path: Path_ = ("access", i)
            sec = Section(self.doc, path, item,
                          {"name", "role", "token_env", "token_file", "token_sha256", "token",
                           "generate"},
                          required={"name", "role"})
            name = sec.get("name", str, f"access[{i}]")
            if name in names:
                self.doc.problem((*path, "name"), f"duplicate access name {name!r}")
            names.add(name)
            role = sec.choice("role", ROLES)
            digest = self._token_digest(sec)
            owner = None if digest is None else _owner(digest, owners)
            if owner is not None:
                # One token, two roles: whichever entry matched last would decide.
                self.doc.problem(path, f"entry {name!r} has the same token as access[{owner[0]}] "
                                       f"{owner[1]!r}: each token belongs to one entry "
                                       "and one role")
            elif digest is not None:
                owners.append((digest, i, name))
            if sec.ok and role and digest:
                out.append(AccessToken(name, role, digest))
        return tuple(out)

    def _metrics(self, top: Section) -> str | None:
        if not top.has("metrics"):
            return None
        sec = Section(self.doc, ("metrics",), top.value["metrics"],
                      {"token_env", "token_file", "token_sha256"})
        return self._token_digest(sec) if sec.ok else None
