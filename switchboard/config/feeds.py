"""The `feeds:` section: each feed and its rules, checked."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from switchboard.config.model import FEED_KINDS, POLL_FEEDS, PUSH_FEEDS, unknown_channel_message
from switchboard.config.sections import _is_web_url, _Sections
from switchboard.feeds.jsonfeed import field_map
from switchboard.feeds.settings import FeedConfig, Matcher, Rule
from switchboard.feeds.severity import SEVERITIES
from switchboard.yamldoc import Path_, Section

_FEED_KEYS = {"id", "kind", "rules", "url", "every", "timeout", "token_env", "token_file",
              "token_sha256", "secret_env", "secret_file", "fields", "signature_header",
              "generate", "language"}
_RULE_KEYS = {"match", "runbook", "channels", "title", "severity", "per", "lead", "maintenance"}


class _FeedSections(_Sections):
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
