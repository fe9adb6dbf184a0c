"""Bearer tokens, people and roles (design §4.2, §7.4).

Machine tokens (config `access:`) are held only as SHA-256 digests and
compared with `hmac.compare_digest`, so neither the config nor a timing side
channel gives a token away. Roles: viewer < marketing, ops < admin; marketing
and ops are separate powers and admin holds both.

People authenticate with personal tokens, looked up in the store on every
request so that a disabled person or a revoked token stops at once. A
person's marketing power may come from a team role (marketing or approver);
which channels it reaches is `switchboard.people`'s to decide.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field

from switchboard.config import AccessToken

_POWERS = {
    "viewer": {"viewer"},
    "marketing": {"viewer", "marketing"},
    "ops": {"viewer", "ops"},
    "admin": {"viewer", "marketing", "ops", "admin"},
}
# Team roles that carry the marketing power on the team's channels.
TEAM_POSTERS = frozenset({"marketing", "approver"})


@dataclass(frozen=True)
class Caller:
    """Who is asking. `person` is False for machine tokens (organisation-wide role);
    `credential` names what they signed in with, for the audit."""

    name: str
    role: str
    person: bool = False
    teams: Mapping[str, frozenset[str]] = field(default_factory=dict)
    credential: str = ""

    def can(self, power: str) -> bool:
        if power in _POWERS[self.role]:
            return True
        return power == "marketing" and any(r & TEAM_POSTERS for r in self.teams.values())

    def team_roles(self, team: str) -> frozenset[str]:
        return self.teams.get(team, frozenset())

    @property
    def audit_credential(self) -> str:
        return self.credential or self.name


# Looks up a personal token (by its SHA-256 digest) and returns its caller.
PersonLookup = Callable[[str], Awaitable["Caller | None"]]


class Tokens:
    def __init__(self, access: Iterable[AccessToken], people: PersonLookup | None = None) -> None:
        self._access = tuple(access)
        self._people = people

    async def identify(self, header: str | None) -> Caller | None:
        """The caller for an `Authorization: Bearer ...` header, or None."""
        if not header or not header.startswith("Bearer "):
            return None
        return await self.caller_for(header[7:].strip())

    async def caller_for(self, token: str) -> Caller | None:
        if not token:
            return None
        digest = sha256_hex(token)
        found = None
        # Compare against every entry (no early exit) to keep timing flat.
        for entry in self._access:
            if hmac.compare_digest(digest, entry.sha256):
                found = Caller(entry.name, entry.role, credential=entry.name)
        if found is None and self._people is not None:
            found = await self._people(digest)
        return found


def sha256_hex(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def digest_matches(token: str, sha256_hex_digest: str) -> bool:
    return hmac.compare_digest(sha256_hex(token), sha256_hex_digest)
