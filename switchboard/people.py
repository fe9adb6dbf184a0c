"""People, teams and approvals (design §7.4).

People are stored accounts with an organisation-wide role (viewer,
marketing, ops, admin) and roles per team (marketing, approver, viewer).
Teams own channels: a person's marketing power reaches a team's channels only
through a marketing or approver role in that team, while ops and admin stay
organisation-wide (in an emergency ops takes over every channel). Machine
tokens from the config keep their organisation-wide role.

Passwords are argon2id hashes; personal tokens are random, shown once and
kept as SHA-256 digests (a token has 256 bits of entropy, so a fast hash is
enough; a password does not, hence argon2).
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from switchboard import refusals
from switchboard.auth import TEAM_POSTERS, Caller, sha256_hex
from switchboard.clock import Clock, rfc3339
from switchboard.config import ROLES, Config, Team
from switchboard.model import Person, Post
from switchboard.poststates import PostState
from switchboard.store import Store

TEAM_ROLES = ("marketing", "approver", "viewer")
NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
MIN_PASSWORD = 12
TOKEN_PREFIX = "sbp_"
BOOTSTRAP_NAME = "admin"
log = structlog.get_logger("people")


@dataclass(frozen=True)
class Credential:
    """What a person signed in with, named for the audit (never the secret)."""

    person: Person
    name: str


class People:
    """The people directory over the store; `config` gives the current teams."""

    def __init__(self, store: Store, clock: Clock, config: Callable[[], Config]) -> None:
        self.store = store
        self.clock = clock
        self.config = config
        self.hasher = PasswordHasher()  # argon2id with the library's current defaults
        # Spent on unknown names too, so timing does not tell which names exist.
        self._dummy = self.hasher.hash(secrets.token_urlsafe(16))

    # -- the directory -------------------------------------------------------

    async def add(self, body: Mapping[str, Any], password_hash: str | None = None) -> Person:
        """A new person from an API body; a password in it comes hashed (`hash_password`,
        off the event loop) as `password_hash`."""
        name = _name(body.get("name"))
        role = _role(body.get("role", "viewer"))
        teams = self.teams_of(body.get("teams", {}))
        unknown = set(body) - {"name", "role", "teams", "password"}
        if unknown:
            raise refusals.bad_request(f"unknown field(s): {', '.join(sorted(unknown))}")
        if not await self.store.add_person(name, role, teams, self.clock()):
            raise refusals.conflict(f"a person named {name!r} exists already")
        if password_hash is not None:
            await self.store.update_person(name, self.clock(), password_hash=password_hash)
        return await self.get(name)

    async def get(self, name: str) -> Person:
        person = await self.store.person(name)
        if person is None:
            raise refusals.not_found(f"no person named {name[:64]!r}")
        return person

    async def update(self, name: str, body: Mapping[str, Any],
               password_hash: str | None = None) -> Person:
        unknown = set(body) - {"role", "teams", "disabled", "password", "revoke_tokens"}
        if unknown:
            raise refusals.bad_request(f"unknown field(s): {', '.join(sorted(unknown))}")
        await self.get(name)
        disabled = body.get("disabled")
        if disabled is not None and not isinstance(disabled, bool):
            raise refusals.bad_request("disabled must be true or false")
        role = None if body.get("role") is None else _role(body["role"])
        teams = None if body.get("teams") is None else self.teams_of(body["teams"])
        await self.store.update_person(name, self.clock(), role=role, disabled=disabled,
                                       teams=teams, password_hash=password_hash)
        if body.get("revoke_tokens") is True:
            await self.store.revoke_person_tokens(name, self.clock())
        return await self.get(name)

    def teams_of(self, value: Any) -> dict[str, tuple[str, ...]]:
        """`{team: [roles]}` or `["team:role", ...]`, checked against the config's teams."""
        pairs: list[tuple[str, Any]] = []
        if isinstance(value, dict):
            for team, roles in value.items():
                for role in roles if isinstance(roles, list) else [roles]:
                    pairs.append((team, role))
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            pairs = [tuple(v.split(":", 1)) if ":" in v else (v, "") for v in value]
        else:
            raise refusals.bad_request("teams must map team ids to roles, or list TEAM:ROLE")
        known = {t.id for t in self.config().teams}
        out: dict[str, list[str]] = {}
        for team, role in pairs:
            if team not in known:
                raise refusals.unprocessable(f"no team named {str(team)[:64]!r} (teams: "
                                             f"{', '.join(sorted(known)) or 'none configured'})")
            if role not in TEAM_ROLES:
                raise refusals.bad_request(f"team role must be one of {', '.join(TEAM_ROLES)}, "
                                           f"not {str(role)[:40]!r} (as TEAM:ROLE)")
            out.setdefault(team, []).append(role)
        return {t: tuple(dict.fromkeys(r)) for t, r in out.items()}

    # -- credentials ---------------------------------------------------------

    async def new_token(self, name: str) -> str:
        """A new personal token; only its digest is kept, so this is its one showing."""
        person = await self.get(name)
        if person.disabled:
            raise refusals.conflict(f"{name} is disabled: enable them before issuing a token")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        await self.store.add_person_token(name, sha256_hex(token), self.clock())
        return token

    def hash_password(self, password: Any) -> str:
        """argon2id of a new password (slow on purpose: run it off the event loop)."""
        if not isinstance(password, str) or len(password) < MIN_PASSWORD:
            raise refusals.bad_request(f"a password needs at least {MIN_PASSWORD} characters")
        return self.hasher.hash(password)

    async def caller_for_digest(self, digest: str) -> Caller | None:
        """The caller holding this personal token, if live and its person enabled.

        The lookup is by digest: timing can only tell about digests, and the
        SHA-256 of a token gives nothing towards the token."""
        found = await self.store.person_token(digest)
        if found is None:
            return None
        token_id, name, _ = found
        person = await self.store.person(name)
        if person is None or person.disabled:
            return None
        return caller(person, f"{name}/token-{token_id}")

    async def password_holder(self, name: str) -> tuple[Person | None, str]:
        """The person who may sign in with a password under `name` (None: nobody, or
        disabled, or without a password) and the hash to check against, a dummy one
        then, so that unknown names cost the same time."""
        person = await self.store.person(name) if NAME.fullmatch(name) else None
        if person is None or person.password_hash is None or person.disabled:
            return None, self._dummy
        return person, person.password_hash

    def password_matches(self, stored: str, password: str) -> bool:
        """argon2 verification: slow on purpose, run it off the event loop."""
        try:
            return bool(self.hasher.verify(stored, password))
        except (VerificationError, InvalidHashError):
            return False

    # -- first start ---------------------------------------------------------

    async def bootstrap(self, state_dir: Path, password_file: Path | None) -> Path | None:
        """With nobody stored, create the `admin` person. Its first password is read
        from the configured file, or generated into a 0600 file under the state
        directory whose path is returned (never into the log)."""
        if await self.store.people_count():
            return None
        if password_file is not None:
            password = password_file.read_text(encoding="utf-8").strip()
            written = None
        else:
            password = secrets.token_urlsafe(18)
            written = state_dir / "admin-password"
            state_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(written, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(password + "\n")
        await self.add({"name": BOOTSTRAP_NAME, "role": "admin"}, self.hash_password(password))
        return written


def caller(person: Person, credential: str) -> Caller:
    return Caller(person.name, person.role, person=True, credential=credential,
                  teams={t: frozenset(r) for t, r in person.teams.items()})


def person_json(person: Person, tokens: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": person.name, "role": person.role,
                           "disabled": person.disabled,
                           "teams": {t: list(r) for t, r in person.teams.items()},
                           "has_password": person.password_hash is not None,
                           "created_at": rfc3339(person.created_at),
                           "updated_at": rfc3339(person.updated_at)}
    if tokens is not None:
        out["tokens"] = [{"id": t["id"], "created_at": rfc3339(t["created_at"]),
                          "revoked_at": rfc3339(t["revoked_at"])} for t in tokens]
    return out


# -- who may act on which channel ----------------------------------------------

def check_marketing(caller: Caller, channel: str, config: Config) -> None:
    """A person's marketing on `channel`: a team's channels need a marketing or
    approver role in that team (403 naming the team); admin reaches every one.
    Machine tokens keep their organisation-wide role."""
    if not caller.person or caller.role == "admin":
        return
    team = config.team_of(channel)
    if team is None:
        if caller.role != "marketing":
            raise refusals.forbidden(f"channel {channel} belongs to no team: marketing there "
                                     "needs the organisation-wide marketing role")
        return
    if not caller.team_roles(team.id) & TEAM_POSTERS:
        raise refusals.forbidden(f"channel {channel} belongs to team {team.id}: "
                                 f"{caller.name} is not a marketing member of {team.id}")


def check_post(caller: Caller, channel: str, kind: str, config: Config) -> None:
    """Team rights for creating or acting on a post; operational posts are ops'
    everywhere (checked by role before this)."""
    if kind == "marketing":
        check_marketing(caller, channel, config)


def check_approver(caller: Caller, post: Post, config: Config) -> Team | None:
    """An approver of the post's team (or an admin), never the post's author. An
    operational post pending is an ops update under a two-person runbook: a second
    ops person approves it."""
    team = config.team_of(post.channel)
    if post.kind == "operational":
        allowed = caller.can("ops")
        team = None
    else:
        allowed = caller.role == "admin" or (
            caller.person and team is not None and "approver" in caller.team_roles(team.id))
    if post.kind == "operational" and not allowed:
        raise refusals.forbidden(f"post {post.id} is an ops update waiting for a second "
                                 "ops person")
    if not allowed:
        whose = f"team {team.id}" if team else f"channel {post.channel} (no team: admin only)"
        raise refusals.forbidden(f"approving post {post.id} needs the approver role of {whose}")
    if post.created_by == caller.name:
        raise refusals.forbidden(f"{caller.name} wrote post {post.id}: another approver "
                                 "must approve it")
    return team


def may_act(caller: Caller, post: Post, config: Config) -> bool:
    """Whether a person's team rights reach this post: a bulk action by filter acts on
    these only, whatever the filter matched."""
    try:
        check_marketing(caller, post.channel, config)
    except refusals.Refused:
        return False
    return True


def state_after_edit(post: Post, config: Config) -> PostState:
    """An approval covers the exact version approved: an edited marketing post on a
    channel that needs approval (its new one, if moved) waits for approval again."""
    if post.kind == "marketing" and config.needs_approval(post.channel):
        return PostState.PENDING_APPROVAL
    return PostState.SCHEDULED


def may_see_audit(caller: Caller) -> tuple[str, ...] | None:
    """None: every entry (admin); else the teams whose entries the caller may read."""
    if caller.role == "admin":
        return None
    teams = tuple(t for t, roles in caller.teams.items() if "approver" in roles)
    if not teams:
        raise refusals.forbidden("the audit is for admins and for a team's approvers")
    return teams


def _name(value: Any) -> str:
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise refusals.bad_request("name must be 1-64 lower-case letters, digits, '.', '_' "
                                   "or '-', starting with a letter or digit")
    return value


def _role(value: Any) -> str:
    if value not in ROLES:
        raise refusals.bad_request(f"role must be one of {', '.join(ROLES)}, "
                                   f"not {str(value)[:40]!r}")
    return str(value)
