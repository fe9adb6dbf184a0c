"""What every client command shares: the HTTP client of the daemon's API (with its
Idempotency-Key retries), exit codes and errors, output as text or JSON, times
shown in the daemon's zone, and the options that name a time or a retry's key."""

from __future__ import annotations

import argparse
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urljoin
from zoneinfo import ZoneInfo

import requests

from switchboard.text import decimal

DEFAULT_URL = "http://127.0.0.1:8650"
OK, FAILED, USAGE, UNREACHABLE = 0, 1, 2, 3
# Requests that create something carry one Idempotency-Key per invocation and
# are retried with it after a dropped connection or a busy store.
RETRY_DELAYS = (0.5, 1.0, 2.0)


class Exit(Exception):
    """Ends the command: `code` is the exit status, `error` the API's error code (or
    `failed`, `usage`, `unreachable` for errors found here), for `--json`."""

    def __init__(self, code: int, message: str = "", error: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.error = error or {USAGE: "usage", UNREACHABLE: "unreachable"}.get(code, "failed")


class Client:
    def __init__(self, args: argparse.Namespace) -> None:
        self.url = (args.url or os.environ.get("SWITCHBOARD_URL") or DEFAULT_URL).rstrip("/")
        self.token = _token(args)
        self.key = getattr(args, "idempotency_key", None) or str(uuid.uuid4())

    def call(self, method: str, path: str, body: Any = None,
             params: dict[str, str] | None = None, keyed: bool = False) -> Any:
        return self.exchange(method, self.url + path, body, params, keyed)[0]

    def pages(self, path: str, params: dict[str, str], follow: bool) -> Iterator[
            tuple[list[Any], str | None, int | None]]:
        """Each page of a list endpoint, with the next page's URL and the total;
        only the first unless `follow`."""
        url: str | None = self.url + path
        query: dict[str, str] | None = params
        while url is not None:
            data, response = self.exchange("GET", url, None, query)
            following = response.links.get("next", {}).get("url")
            following = None if following is None else urljoin(self.url + "/", following)
            total = response.headers.get("X-Total-Count")
            yield data, following, decimal(total or "")
            url, query = (following, None) if follow else (None, None)

    def exchange(self, method: str, url: str, body: Any = None,
                 params: dict[str, str] | None = None,
                 keyed: bool = False) -> tuple[Any, requests.Response]:
        response = self.request(method, url, keyed, json=body, params=params)
        return self.answer(response), response

    def request(self, method: str, url: str, keyed: bool, **kwargs: Any) -> requests.Response:
        """One request (`url` absolute, or a path on the daemon); a keyed one is
        retried with the same key, so a retry after a dropped connection never
        makes a second post or incident."""
        url = url if url.startswith(("http://", "https://")) else self.url + url
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if keyed:
            headers["Idempotency-Key"] = self.key
        for delay in (*RETRY_DELAYS, None) if keyed else (None,):
            try:
                response = requests.request(method, url, headers=headers, timeout=150,
                                            **kwargs)
            except requests.RequestException as exc:
                if delay is None:
                    hint = f" (Idempotency-Key {self.key}: repeat with --idempotency-key " \
                           f"{self.key} to be safe)" if keyed else ""
                    raise Exit(UNREACHABLE, f"cannot reach the daemon at {self.url}: "
                                            f"{type(exc).__name__}{hint}") from exc
            else:
                if response.status_code != 503 or delay is None:
                    return response
            time.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    @staticmethod
    def answer(response: requests.Response) -> Any:
        try:
            data = response.json()
        except ValueError:
            data = None
        _note_zone(response.headers.get("X-Switchboard-Timezone"))
        if response.status_code >= 400:
            error = data.get("error") if isinstance(data, dict) else None
            error = error if isinstance(error, dict) else {}
            message = f"{response.status_code}: {error.get('message') or response.reason}"
            if response.status_code == 401:
                message += "; " + TOKEN_HELP
            raise Exit(FAILED, message, str(error.get("code") or response.status_code))
        return data


TOKEN_HELP = ("the token comes from --token-file FILE, SWITCHBOARD_TOKEN_FILE or "
              "SWITCHBOARD_TOKEN; the embedded default writes one per role under var/tokens/ "
              "(export SWITCHBOARD_TOKEN_FILE=$PWD/var/tokens/admin.token)")


def _token(args: argparse.Namespace) -> str | None:
    path = args.token_file or os.environ.get("SWITCHBOARD_TOKEN_FILE")
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise Exit(USAGE, f"cannot read token file {path}: {exc.strerror}") from exc
    return os.environ.get("SWITCHBOARD_TOKEN")


class Shown:
    """The zone times are printed in: the daemon's configured one, as it announces it."""

    zone: ZoneInfo | None = None


def _note_zone(name: str | None) -> None:
    if name:
        from switchboard.timefmt import zone_named
        Shown.zone = zone_named(name)


def shown_time(value: object) -> str:
    """An API time as `2026-12-01 17:30 GMT` in the daemon's zone."""
    from switchboard.timefmt import UTC_ZONE, local_text
    return local_text(value, Shown.zone or UTC_ZONE)


def output(args: argparse.Namespace, data: Any, human: Callable[[Any], str]) -> int:
    print(json.dumps(data, indent=2) if args.json else human(data))
    return OK


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    cells = [list(map(str, header))] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in cells)


_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d:\d\d|Z)")


def times_in(text: str) -> str:
    """A stored reason (`due_at 2026-12-01T09:00:00+00:00 -> ...`) with its times local."""
    return _RFC3339.sub(lambda m: shown_time(m.group(0)), text)


def print_error(code: str, message: str) -> None:
    print(json.dumps({"error": {"code": code, "message": message}}))


def key_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--idempotency-key", metavar="KEY",
                   help="repeat an earlier request safely (default: a new key, reused on this "
                        "command's own retries)")


WHEN = "RFC 3339 with offset, a local time in the configured zone, or an offset like +10m"
# Adds a subcommand (`command`) or the options of a client command (`client`).
Adder = Callable[..., argparse.ArgumentParser]
