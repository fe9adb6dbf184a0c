"""Checks that a push delivery came from its feed: bearer tokens and HMAC signatures.

Every comparison is constant-time so a caller cannot learn a token or a
signature byte by byte from response times.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping

from switchboard.feeds.signal import FeedError


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive lookup: aiohttp's headers are, a plain dict in a test is not."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


def unauthorized(feed_id: str, why: str) -> FeedError:
    return FeedError("unauthorized", f"feed {feed_id!r}: {why}", 401)


def check_bearer(feed_id: str, headers: Mapping[str, str], token_sha256: str | None) -> None:
    """`Authorization: Bearer <token>` whose sha256 is the configured hash."""
    if not token_sha256:
        raise unauthorized(feed_id, "no token is configured, so no delivery is accepted")
    given = header(headers, "Authorization") or ""
    scheme, _, token = given.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized(feed_id, "missing bearer token (Authorization: Bearer ...)")
    digest = hashlib.sha256(token.strip().encode("utf-8", "surrogatepass")).hexdigest()
    if not hmac.compare_digest(digest, token_sha256.lower()):
        raise unauthorized(feed_id, "wrong bearer token")


def hmac_sha256_hex(secret: str, body: bytes) -> str:
    # surrogateescape: a secret read from a non-UTF-8 environment keeps its bytes
    return hmac.new(secret.encode("utf-8", "surrogateescape"), body, hashlib.sha256).hexdigest()


def signature_matches(secret: str, body: bytes, candidates: Iterable[str]) -> bool:
    """True if any candidate is the body's HMAC-SHA256 (hex, any case).

    Every candidate is compared, even after a match, so timing says nothing
    about which one matched.
    """
    expected = hmac_sha256_hex(secret, body).encode()
    matched = False
    for candidate in candidates:
        given = candidate.strip().lower().encode("ascii", "replace")
        matched |= hmac.compare_digest(expected, given)
    return matched


_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")


def check_presented(feed_id: str, headers: Mapping[str, str], *, token_sha256: str | None,
                    signature_header: str | None, secret: bool) -> None:
    """What the headers alone can settle, before any of the body is read.

    A bearer token is checked in full. A signature covers the body, so only
    its presence and shape (a SHA-256 hex digest) are checked here; the
    parser's `authenticate` verifies it once the body is in.
    """
    if not token_sha256 and not (secret and signature_header):
        raise unauthorized(feed_id, "no token or secret is configured, so no delivery "
                                    "is accepted")
    if token_sha256:
        check_bearer(feed_id, headers, token_sha256)
    if secret and signature_header:
        given = header(headers, signature_header) or ""
        if not _HEX_DIGEST.search(given):
            raise unauthorized(feed_id, f"missing {signature_header} header")
