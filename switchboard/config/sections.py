"""The reader's common ground: paths, secrets, token digests, unique ids."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from pathlib import Path
from secrets import token_urlsafe
from typing import Any, TypeVar
from urllib.parse import urlsplit

from switchboard.config.model import ChannelConfig
from switchboard.feeds.settings import FeedConfig
from switchboard.yamldoc import Document, Section

_SECRET_SUFFIXES = ("_env", "_file")
_Item = TypeVar("_Item", ChannelConfig, FeedConfig)


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


class _Sections:
    def __init__(self, doc: Document, path: Path, env: Any, create_tokens: bool = True) -> None:
        self.doc, self.path, self.env = doc, path, env
        # False for `check` and `simulate`: reading a config never writes a file.
        self.create_tokens = create_tokens
        self.base = path.resolve().parent.parent if path.parent.name == "config" \
            else path.resolve().parent

    def _path(self, value: str) -> Path:
        # Relative paths are relative to the project (the config file's parent
        # when it lives in config/), so `make run` works from any directory.
        p = Path(value)
        return p if p.is_absolute() else (self.base / p)

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

    def _token_digest(self, sec: Section) -> str | None:
        if sec.has("token_sha256"):
            digest = sec.get("token_sha256", str, "")
            if not re.fullmatch(r"[0-9a-fA-F]{64}", digest or ""):
                self.doc.problem(sec.at("token_sha256"), "must be 64 hex digits (sha256sum)")
                return None
            return str(digest).lower()
        if sec.get("generate", bool, False):
            if not self.create_tokens:
                pending = self._token_to_generate(sec)
                if pending is not None:
                    return pending
            else:
                self._generate_token(sec)
        token = self._secret(sec, "token")
        return hashlib.sha256(token.encode()).hexdigest() if token else None

    def _token_to_generate(self, sec: Section) -> str | None:
        """For a check: a stand-in digest of a token file the daemon will create at its
        first start (unique per file, so two of them are not taken for one token)."""
        ref = sec.get("token_file", str)
        if ref is None or "\0" in ref or self._path(ref).exists():
            return None  # the usual reading reports what is wrong, or reads the file
        return hashlib.sha256(f"to be generated: {self._path(ref)}".encode()).hexdigest()

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
