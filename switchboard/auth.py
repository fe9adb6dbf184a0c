"""Bearer tokens and roles (design §4.2).

Tokens are held only as SHA-256 digests and compared with
`hmac.compare_digest`, so neither the config nor a timing side channel gives
a token away. Roles: viewer < marketing, ops < admin; marketing and ops are
separate powers and admin holds both.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from switchboard.config import AccessToken

_POWERS = {
    "viewer": {"viewer"},
    "marketing": {"viewer", "marketing"},
    "ops": {"viewer", "ops"},
    "admin": {"viewer", "marketing", "ops", "admin"},
}


@dataclass(frozen=True)
class Caller:
    name: str
    role: str

    def can(self, power: str) -> bool:
        return power in _POWERS[self.role]


class Tokens:
    def __init__(self, access: Iterable[AccessToken]) -> None:
        self._access = tuple(access)

    def identify(self, header: str | None) -> Caller | None:
        """The caller for an `Authorization: Bearer ...` header, or None."""
        if not header or not header.startswith("Bearer "):
            return None
        return self.caller_for(header[7:].strip())

    def caller_for(self, token: str) -> Caller | None:
        digest = hashlib.sha256(token.encode()).hexdigest()
        found = None
        # Compare against every entry (no early exit) to keep timing flat.
        for entry in self._access:
            if hmac.compare_digest(digest, entry.sha256):
                found = Caller(entry.name, entry.role)
        return found


def digest_matches(token: str, sha256_hex: str) -> bool:
    return hmac.compare_digest(hashlib.sha256(token.encode()).hexdigest(), sha256_hex)
