"""The `channels:` section: each channel kind's options and secrets, checked."""

from __future__ import annotations

import re
from typing import Any

from switchboard.config.model import APPROVAL, AUDIENCES, CHANNEL_KINDS, ChannelConfig
from switchboard.config.sections import _SECRET_SUFFIXES, _Sections
from switchboard.yamldoc import Path_, Section

_X_CREDENTIALS = ("consumer_key", "consumer_secret", "access_token", "access_token_secret")
_COMMON_CHANNEL_KEYS = {"id", "kind", "audience", "max_length", "timeout", "approval"}


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


def _default_audience(kind: str) -> str:
    return "internal" if kind in _INTERNAL_KINDS else "public"


class _ChannelSections(_Sections):
    def _channels(self, top: Section) -> tuple[ChannelConfig, ...]:
        items = top.get("channels", list, [])
        if top.has("channels") and not items:
            self.doc.problem(top.at("channels"), "at least one channel is needed")
        built = [self._channel(("channels", i), item) for i, item in enumerate(items)]
        return self._unique("channel", built)

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
