"""The daemon's configuration file (design §4.3), validated completely at load.

Loading either returns a `Config` the running code can trust or raises
`InvalidFile` with every problem found, each naming file, line, column and key.
Secrets are resolved here from `*_env` / `*_file` so a missing one is a load
error, not a failure at the first publish.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from secrets import token_urlsafe
from typing import Any, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from switchboard import yamldoc
from switchboard.feeds.jsonfeed import field_map
from switchboard.feeds.settings import FeedConfig, Matcher, Rule
from switchboard.feeds.severity import SEVERITIES
from switchboard.yamldoc import Document, InvalidFile, Path_, Section

ROLES = ("viewer", "marketing", "ops", "admin")
AUDIENCES = ("public", "internal")
CHANNEL_KINDS = ("outbox", "console", "webhook", "x", "mastodon", "bluesky", "facebook", "threads",
                 "telegram", "teams")
FEED_KINDS = ("alertmanager", "pagerduty", "json", "cap", "atom", "rss", "statuspage", "gtfs-rt",
              "siri-sx")
PUSH_FEEDS = ("alertmanager", "pagerduty", "json")
POLL_FEEDS = ("cap", "atom", "rss", "statuspage", "gtfs-rt", "siri-sx")
# A post later than max_lateness is recorded `missed` instead of sent: under a
# second, every post would be (the dispatcher's own wake-up takes milliseconds).
MIN_LATENESS = timedelta(seconds=1)

_SECRET_SUFFIXES = ("_env", "_file")
_X_CREDENTIALS = ("consumer_key", "consumer_secret", "access_token", "access_token_secret")
_COMMON_CHANNEL_KEYS = {"id", "kind", "audience", "max_length", "timeout", "approval"}
APPROVAL = ("required", "none")
# Retry and rate-limit behaviour of the network channels (see channels/remote.py).
_RETRY_KEYS = {"max_retries", "retry_base", "retry_max", "rate_limit_wait", "rate_limit_max_wait"}
_CHANNEL_KEYS: dict[str, set[str]] = {
    "outbox": {"path"},
    "console": set(),
    "webhook": {"url_env", "url_file", "headers", "idempotent"} | _RETRY_KEYS,
    "x": {"credentials", "api_url"} | _RETRY_KEYS,
    "mastodon": {"api_base_url", "access_token_env", "access_token_file"} | _RETRY_KEYS,
    "bluesky": {"service", "identifier", "app_password_env", "app_password_file"} | _RETRY_KEYS,
    "facebook": {"page_id", "page_token_env", "page_token_file", "api_url", "api_version",
                 "slow_down_at"} | _RETRY_KEYS,
    "threads": {"user_id", "access_token_env", "access_token_file", "api_url",
                "api_version"} | _RETRY_KEYS,
    "telegram": {"chat_id", "bot_token_env", "bot_token_file", "api_url"} | _RETRY_KEYS,
    "teams": {"url_env", "url_file"} | _RETRY_KEYS,
}
# Kinds whose audience is internal unless the file says otherwise.
_INTERNAL_KINDS = ("teams",)
_BLUESKY_IDENTIFIER = re.compile(r"did:[a-z]+:[A-Za-z0-9._:%-]+|"
                                 r"([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z][A-Za-z0-9-]*")
_TELEGRAM_CHAT = re.compile(r"@[A-Za-z][A-Za-z0-9_]{3,31}|-?[0-9]+")
_TELEGRAM_TOKEN = re.compile(r"[0-9]+:[A-Za-z0-9_-]{30,}")
_GRAPH_VERSION = re.compile(r"v[0-9]+\.[0-9]+")
_FEED_KEYS = {"id", "kind", "rules", "url", "every", "timeout", "token_env", "token_file",
              "token_sha256", "secret_env", "secret_file", "fields", "signature_header",
              "generate", "language"}
_RULE_KEYS = {"match", "runbook", "channels", "title", "severity", "per", "lead", "maintenance"}


@dataclass(frozen=True)
class AccessToken:
    name: str
    role: str
    sha256: str  # tokens are kept only as hashes, compared in constant time


# The longest text each kind takes when the config sets no max_length: a
# platform's own limit for social accounts (the outbox stands in for a
# short-form one). Internal outlets mirror no platform: an ops chat or log
# channel gets a chat-sized limit, never a public account's 280.
# Bluesky counts graphemes, Telegram UTF-16 units (after entity parsing); a
# Facebook Page post takes 63,206 characters; a Teams card stays well inside
# Teams' ~28 KB message size.
_PLATFORM_MAX_LENGTH = {"x": 280, "mastodon": 500, "bluesky": 300, "threads": 500,
                        "facebook": 63_206, "telegram": 4096, "teams": 20_000}
PUBLIC_MAX_LENGTH = {"outbox": 280, "console": 10_000, "webhook": 40_000,
                     **_PLATFORM_MAX_LENGTH}
INTERNAL_MAX_LENGTH = {"outbox": 10_000, "console": 10_000, "webhook": 40_000,
                       **_PLATFORM_MAX_LENGTH}


@dataclass(frozen=True)
class ChannelConfig:
    id: str
    kind: str
    audience: str = "public"
    max_length: int | None = None
    timeout: float = 10.0
    options: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    approval: bool = False  # marketing posts wait for an approver (`approval: required`)

    @property
    def text_limit(self) -> int:
        """The longest text this channel takes: its max_length, else its kind's."""
        if self.max_length is not None:
            return self.max_length
        table = INTERNAL_MAX_LENGTH if self.audience == "internal" else PUBLIC_MAX_LENGTH
        return table[self.kind]


@dataclass(frozen=True)
class Team:
    """A team owns channels; its members' marketing rights stop at them."""

    id: str
    channels: tuple[str, ...]
    approval: bool = False


@dataclass(frozen=True)
class Config:
    path: Path
    listen_host: str
    listen_port: int
    state_dir: Path
    timezone: ZoneInfo
    runbooks_dir: Path
    max_lateness: timedelta
    access: tuple[AccessToken, ...]
    channels: tuple[ChannelConfig, ...]
    feeds: tuple[FeedConfig, ...]
    metrics_token_sha256: str | None = None
    max_body_bytes: int = 1024 * 1024
    teams: tuple[Team, ...] = ()
    admin_password_file: Path | None = None

    def team_of(self, channel_id: str) -> Team | None:
        return next((t for t in self.teams if channel_id in t.channels), None)

    def needs_approval(self, channel_id: str) -> bool:
        """Marketing posts on this channel wait for an approver (its team's or its own
        `approval: required`)."""
        team = self.team_of(channel_id)
        channel = self.channel(channel_id)
        return bool((team and team.approval) or (channel and channel.approval))

    def channel(self, channel_id: str) -> ChannelConfig | None:
        return next((c for c in self.channels if c.id == channel_id), None)

    def feed(self, feed_id: str) -> FeedConfig | None:
        return next((f for f in self.feeds if f.id == feed_id), None)

    @property
    def database(self) -> Path:
        return self.state_dir / "switchboard.db"


def load(path: Path, env: dict[str, str] | None = None,
         runbook_names: set[str] | None = None) -> Config:
    """Load and validate; `runbook_names` (when known) checks rule references."""
    doc = yamldoc.load(path)
    config = _Reader(doc, path, os.environ if env is None else env).read()
    if runbook_names is not None:
        check_runbook_references(doc, config, runbook_names)
    doc.raise_if_problems()
    assert config is not None
    return config


def read(path: Path, env: dict[str, str] | None = None) -> tuple[Config | None, Document]:
    """Read without raising, for checks that go on to the runbooks: the config as far
    as it could be read (None when the top level is unusable) and the document, whose
    `problems` list what is wrong. Raises InvalidFile only when the YAML cannot be
    parsed at all."""
    doc = yamldoc.load(path)
    return _Reader(doc, path, os.environ if env is None else env).read(), doc


def check_runbook_references(doc: Document, config: Config | None, names: set[str]) -> None:
    if config is None:
        return
    known = ", ".join(sorted(names)) or "none"
    for i, feed in enumerate(config.feeds):
        for j, rule in enumerate(feed.rules):
            if rule.runbook not in names:
                doc.problem(("feeds", i, "rules", j, "runbook"),
                            f"no runbook named {rule.runbook!r} (runbooks: {known})")


_Item = TypeVar("_Item", ChannelConfig, FeedConfig)


class _Reader:
    def __init__(self, doc: Document, path: Path, env: Any) -> None:
        self.doc, self.path, self.env = doc, path, env
        self.base = path.resolve().parent.parent if path.parent.name == "config" \
            else path.resolve().parent

    def read(self) -> Config | None:
        top = Section(self.doc, (), self.doc.data,
                      {"listen", "state_dir", "timezone", "runbooks_dir", "max_lateness",
                       "access", "channels", "feeds", "metrics", "max_body_bytes", "teams",
                       "people"},
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

    def _path(self, value: str) -> Path:
        # Relative paths are relative to the project (the config file's parent
        # when it lives in config/), so `make run` works from any directory.
        p = Path(value)
        return p if p.is_absolute() else (self.base / p)

    def _listen(self, top: Section) -> tuple[str, int]:
        value = top.get("listen", str, "127.0.0.1:8650")
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) < 65536:
            self.doc.problem(top.at("listen"), f"must be HOST:PORT, not {value!r}")
            return "127.0.0.1", 8650
        return host.strip("[]"), int(port)

    def _timezone(self, top: Section) -> ZoneInfo:
        name = top.get("timezone", str, "UTC")
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            self.doc.problem(top.at("timezone"), f"unknown timezone {name!r}")
            return ZoneInfo("UTC")

    def _secret(self, sec: Section, stem: str, required: bool = True) -> str | None:
        """Resolve `<stem>_env` or `<stem>_file`; the value itself never sits in YAML."""
        given = [s for s in _SECRET_SUFFIXES if sec.has(stem + s)]
        if sec.has(stem):
            self.doc.problem(sec.at(stem), f"secrets are not written in the file: use "
                                           f"{stem}_env or {stem}_file")
            return None
        if len(given) > 1:
            self.doc.problem(sec.at(stem + given[1]), f"give only one of {stem}_env, {stem}_file")
        if not given:
            if required:
                self.doc.problem(sec.path, f"missing {stem}_env or {stem}_file")
            return None
        key = stem + given[0]
        ref = sec.get(key, str)
        if ref is None:
            return None
        if given[0] == "_env":
            value = self.env.get(ref)
            if not value:
                self.doc.problem(sec.at(key), f"environment variable {ref} is not set")
                return None
            return str(value).strip()
        try:
            return self._path(ref).read_text(encoding="utf-8").strip()
        except OSError as exc:
            self.doc.problem(sec.at(key), f"cannot read secret file {ref}: {exc.strerror}")
            return None
        except ValueError:  # a NUL byte in the name
            self.doc.problem(sec.at(key), f"bad file name {ref!r}")
            return None

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

    def _token_digest(self, sec: Section) -> str | None:
        if sec.has("token_sha256"):
            digest = sec.get("token_sha256", str, "")
            if not re.fullmatch(r"[0-9a-fA-F]{64}", digest or ""):
                self.doc.problem(sec.at("token_sha256"), "must be 64 hex digits (sha256sum)")
                return None
            return str(digest).lower()
        if sec.get("generate", bool, False):
            self._generate_token(sec)
        token = self._secret(sec, "token")
        return hashlib.sha256(token.encode()).hexdigest() if token else None

    def _generate_token(self, sec: Section) -> None:
        """`generate: true` creates a missing token file (0600): the local default's tokens."""
        ref = sec.get("token_file", str)
        if ref is None:
            self.doc.problem(sec.at("generate"), "generate needs token_file")
            return
        if "\0" in ref:
            self.doc.problem(sec.at("token_file"), f"bad file name {ref!r}")
            return
        target = self._path(ref)
        if target.exists():
            return
        try:
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(token_urlsafe(32) + "\n")
        except FileExistsError:
            return
        except OSError as exc:
            self.doc.problem(sec.at("token_file"), f"cannot create token file {ref}: "
                                                   f"{exc.strerror}")

    def _metrics(self, top: Section) -> str | None:
        if not top.has("metrics"):
            return None
        sec = Section(self.doc, ("metrics",), top.value["metrics"],
                      {"token_env", "token_file", "token_sha256"})
        return self._token_digest(sec) if sec.ok else None

    def _channels(self, top: Section) -> tuple[ChannelConfig, ...]:
        items = top.get("channels", list, [])
        if top.has("channels") and not items:
            self.doc.problem(top.at("channels"), "at least one channel is needed")
        built = [self._channel(("channels", i), item) for i, item in enumerate(items)]
        return self._unique("channel", built)

    def _unique(self, what: str, built: list[_Item | None]) -> tuple[_Item, ...]:
        """The items that were read, each id once; a repeated id is a problem."""
        out: list[_Item] = []
        seen: set[str] = set()
        for i, item in enumerate(built):
            if item is None:
                continue
            if item.id in seen:
                self.doc.problem((f"{what}s", i, "id"), f"duplicate {what} id {item.id!r}")
            seen.add(item.id)
            out.append(item)
        return tuple(out)

    def _channel(self, path: Path_, item: Any) -> ChannelConfig | None:
        kind = item.get("kind") if isinstance(item, dict) else None
        if kind is not None and kind not in CHANNEL_KINDS:
            self.doc.problem((*path, "kind"), f"unknown channel kind {kind!r} "
                                              f"(kinds: {', '.join(CHANNEL_KINDS)})")
            return None
        extra = _CHANNEL_KEYS.get(str(kind), set())
        sec = Section(self.doc, path, item, _COMMON_CHANNEL_KEYS | extra, required={"id", "kind"})
        if not sec.ok or kind is None:
            return None
        channel_id = sec.get("id", str, "")
        if channel_id and not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", channel_id):
            self.doc.problem(sec.at("id"), f"channel id {channel_id!r} must be lower-case "
                                           "letters, digits, '.', '_' or '-'")
        options, secrets = self._channel_options(str(kind), sec)
        options.update(self._retry_options(sec, extra))
        return ChannelConfig(
            id=channel_id, kind=str(kind),
            audience=sec.choice("audience", AUDIENCES, _default_audience(str(kind)))
            or _default_audience(str(kind)),
            max_length=sec.get("max_length", int),
            timeout=sec.get("timeout", float, 10.0),
            options=options, secrets=secrets,
            approval=sec.choice("approval", APPROVAL, "none") == "required")

    def _retry_options(self, sec: Section, allowed: set[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "max_retries" in allowed and sec.has("max_retries"):
            retries = sec.get("max_retries", int)
            if retries is not None and retries < 0:
                self.doc.problem(sec.at("max_retries"), "must be 0 or more")
            elif retries is not None:
                out["max_retries"] = retries
        for key in sorted((_RETRY_KEYS - {"max_retries"}) & allowed):
            if sec.has(key):
                value = sec.duration(key)
                if value is not None:
                    out[key] = value.total_seconds()
        return out

    def _channel_options(self, kind: str, sec: Section) -> tuple[dict[str, Any], dict[str, str]]:
        options: dict[str, Any] = {}
        secrets: dict[str, str] = {}
        if kind == "outbox":
            options["path"] = self._path(sec.get("path", str, "./var/outbox.jsonl"))
        elif kind == "webhook":
            url = self._secret(sec, "url")
            if url:
                secrets["url"] = url
            options["headers"] = sec.get("headers", dict, {})
            # Unset: the channel decides by the receiver's host (Slack ignores keys).
            if sec.has("idempotent"):
                options["idempotent"] = sec.get("idempotent", bool)
        elif kind == "x":
            options["api_url"] = sec.get("api_url", str, "https://api.twitter.com")
            creds = Section(self.doc, sec.at("credentials"), sec.value.get("credentials"),
                            {f"{c}{s}" for c in _X_CREDENTIALS for s in _SECRET_SUFFIXES})
            for name in _X_CREDENTIALS:
                value = self._secret(creds, name) if creds.ok else None
                if value:
                    secrets[name] = value
        elif kind == "mastodon":
            options["api_base_url"] = sec.get("api_base_url", str)
            if options["api_base_url"] is None:
                self.doc.problem(sec.path, "missing required key 'api_base_url'")
            token = self._secret(sec, "access_token")
            if token:
                secrets["access_token"] = token
        else:
            self._platform_options(kind, sec, options, secrets)
        return options, secrets

    def _platform_options(self, kind: str, sec: Section, options: dict[str, Any],
                          secrets: dict[str, str]) -> None:
        """bluesky, facebook, threads, telegram and teams (see docs/operations.md)."""
        if kind == "bluesky":
            options["service"] = self._url(sec, "service", "https://bsky.social")
            options["identifier"] = self._matching(
                sec, "identifier", _BLUESKY_IDENTIFIER,
                "must be the account's handle (council.bsky.social) or DID (did:plc:...)")
            self._keep_secret(sec, "app_password", secrets)
        elif kind in ("facebook", "threads"):
            node = "page_id" if kind == "facebook" else "user_id"
            options[node] = self._matching(sec, node, re.compile(r"[0-9]+"),
                                           "must be the numeric id Meta shows for it")
            default = "https://graph.facebook.com" if kind == "facebook" \
                else "https://graph.threads.net"
            options["api_url"] = self._url(sec, "api_url", default)
            if sec.has("api_version"):
                options["api_version"] = self._matching(sec, "api_version", _GRAPH_VERSION,
                                                        "must look like v23.0")
            if kind == "facebook" and sec.has("slow_down_at"):
                share = sec.get("slow_down_at", float)
                if share is not None and not 1 <= share <= 100:
                    self.doc.problem(sec.at("slow_down_at"), "must be a percentage, 1 to 100")
                elif share is not None:
                    options["slow_down_at"] = share
            self._keep_secret(sec, "page_token" if kind == "facebook" else "access_token",
                              secrets)
        elif kind == "telegram":
            options["chat_id"] = self._matching(
                sec, "chat_id", _TELEGRAM_CHAT,
                "must be the channel's @username or its numeric id (-100...)")
            options["api_url"] = self._url(sec, "api_url", "https://api.telegram.org")
            token = self._keep_secret(sec, "bot_token", secrets)
            if token and not _TELEGRAM_TOKEN.fullmatch(token):
                given = "bot_token_env" if sec.has("bot_token_env") else "bot_token_file"
                self.doc.problem(sec.at(given), "does not hold a bot token as @BotFather gives "
                                                "it (digits, ':', then 35 characters)")
        elif kind == "teams":
            url = self._keep_secret(sec, "url", secrets)
            if url and not re.fullmatch(r"https://\S+", url):
                given = "url_env" if sec.has("url_env") else "url_file"
                self.doc.problem(sec.at(given), "does not hold an https:// workflow URL")

    def _keep_secret(self, sec: Section, stem: str, secrets: dict[str, str]) -> str | None:
        value = self._secret(sec, stem)
        if value:
            secrets[stem] = value
        return value

    def _matching(self, sec: Section, key: str, pattern: re.Pattern[str],
                  explain: str) -> str | None:
        """A required identifier, given as a string or (ids written bare) a number."""
        value = sec.value.get(key) if isinstance(sec.value, dict) else None
        if value is None:
            self.doc.problem(sec.path, f"missing required key '{key}'")
            return None
        text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) \
            else None
        if text is None or not pattern.fullmatch(text):
            self.doc.problem(sec.at(key), f"{explain}, not {value!r}")
            return None
        return text

    def _url(self, sec: Section, key: str, default: str) -> str:
        value = sec.get(key, str, default)
        if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
            self.doc.problem(sec.at(key), f"must be an http(s) URL, not {value!r}")
            return default
        return str(value).rstrip("/")

    def _feeds(self, top: Section, channel_ids: set[str]) -> tuple[FeedConfig, ...]:
        return self._unique("feed", [self._feed(("feeds", i), item, channel_ids)
                                     for i, item in enumerate(top.get("feeds", list, []))])

    def _feed(self, path: Path_, item: Any, channel_ids: set[str]) -> FeedConfig | None:
        sec = Section(self.doc, path, item, _FEED_KEYS, required={"id", "kind"})
        if not sec.ok:
            return None
        kind = sec.choice("kind", FEED_KINDS)
        if kind is None:
            return None
        url = sec.get("url", str)
        if kind in POLL_FEEDS and not url:
            self.doc.problem(path, f"missing required key 'url' (a {kind} feed is polled)")
        elif url and not _is_web_url(url):
            self.doc.problem(sec.at("url"), f"must be an http:// or https:// URL with a host, "
                                            f"not {url!r}")
        token_digest = None
        secret = None
        if kind in ("alertmanager", "json") and (
                sec.has("token_env") or sec.has("token_file") or sec.has("token_sha256")):
            token_digest = self._token_digest(sec)
        if kind in ("pagerduty", "json") and (sec.has("secret_env") or sec.has("secret_file")):
            secret = self._secret(sec, "secret")
        if kind in PUSH_FEEDS and token_digest is None and secret is None:
            need = {"alertmanager": "token_env, token_file or token_sha256",
                    "pagerduty": "secret_env or secret_file",
                    "json": "a token (token_*) or an HMAC secret (secret_*)"}[kind]
            self.doc.problem(path, f"{kind} feeds need {need}: push endpoints never run open")
        fields = sec.get("fields", dict, {})
        if kind == "json":
            self._check_field_map(sec, fields)
        return FeedConfig(
            id=sec.get("id", str, ""), kind=kind,
            rules=self._rules(sec, channel_ids), url=url,
            every=sec.duration("every", timedelta(seconds=60)) or timedelta(seconds=60),
            timeout=sec.get("timeout", float, 10.0),
            token_sha256=token_digest, secret=secret,
            fields=fields,
            signature_header=sec.get("signature_header", str),
            language=self._language(sec))

    def _language(self, sec: Section) -> str:
        language = sec.get("language", str, "en") or "en"
        if not re.fullmatch(r"[A-Za-z]{2,8}([-_][A-Za-z0-9]{1,8})*", language):
            self.doc.problem(sec.at("language"), f"not a language tag such as en or fr-CA: "
                                                 f"{language[:40]!r}")
        return language

    def _check_field_map(self, sec: Section, fields: dict[str, Any]) -> None:
        # The json feed's mapping is the feed module's to define; it says what is wrong.
        try:
            field_map(fields)
        except ValueError as exc:
            self.doc.problem(sec.at("fields"), str(exc).removeprefix("fields: "))

    def _rules(self, feed: Section, channel_ids: set[str]) -> tuple[Rule, ...]:
        out: list[Rule] = []
        for j, item in enumerate(feed.get("rules", list, [])):
            path = (*feed.path, "rules", j)
            sec = Section(self.doc, path, item, _RULE_KEYS, required={"runbook"})
            if not sec.ok:
                continue
            channels = None
            if sec.has("channels"):
                listed = sec.str_list("channels")
                for k, cid in enumerate(listed):
                    if cid not in channel_ids:
                        self.doc.problem((*path, "channels", k),
                                         unknown_channel_message(cid, channel_ids))
                # A channel named twice is one channel (it is held once).
                channels = tuple(dict.fromkeys(listed))
            out.append(Rule(match=self._matchers(sec), runbook=sec.get("runbook", str, ""),
                            channels=channels, title=sec.get("title", str),
                            severity=sec.choice("severity", SEVERITIES),
                            per=sec.choice("per", ("group", "alert"), "group") or "group",
                            lead=sec.duration("lead", timedelta(0)) or timedelta(0),
                            maintenance=bool(sec.get("maintenance", bool, False))))
        return tuple(out)

    def _matchers(self, rule: Section) -> dict[str, Matcher]:
        out: dict[str, Matcher] = {}
        for name, value in (rule.get("match", dict, {}) or {}).items():
            where = (*rule.path, "match", name)
            if isinstance(value, str | int | float) and not isinstance(value, bool):
                out[name] = Matcher(values=(str(value),))
            elif isinstance(value, list) and all(isinstance(v, str | int) for v in value):
                out[name] = Matcher(values=tuple(str(v) for v in value))
            elif isinstance(value, dict) and set(value) == {"regex"}:
                try:
                    out[name] = Matcher(pattern=re.compile(str(value["regex"])))
                except re.error as exc:
                    self.doc.problem(where, f"bad regular expression: {exc}")
            else:
                self.doc.problem(where, "must be a value, a list of values or {regex: PATTERN}")
        return out


def _owner(digest: str, owners: list[tuple[str, int, str]]) -> tuple[int, str] | None:
    """The (index, name) of the entry already holding this token digest."""
    for held, index, name in owners:
        # Digests are compared as credentials are everywhere: in constant time.
        if hmac.compare_digest(held, digest):
            return index, name
    return None


def _is_web_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # a bad port or bracketed host
        return False


def unknown_channel_message(cid: str, known: set[str]) -> str:
    return f"no channel named {cid!r} (channels: {', '.join(sorted(known)) or 'none'})"


__all__ = ["SEVERITIES", "AccessToken", "ChannelConfig", "Config", "FeedConfig", "InvalidFile",
           "Matcher", "Rule", "Team", "load", "unknown_channel_message"]


def _default_audience(kind: str) -> str:
    return "internal" if kind in _INTERNAL_KINDS else "public"
