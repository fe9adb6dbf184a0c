"""A request the daemon refuses, carrying the HTTP status that fits it.

Domain code (posts, incidents, feeds) raises `Refused`; the API turns it into
`{"error": {"code", "message"}}` and the CLI prints the message.
"""

from __future__ import annotations


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def bad_request(message: str) -> Refused:
    return Refused(400, "bad_request", message)


def not_found(message: str) -> Refused:
    return Refused(404, "not_found", message)


def conflict(message: str) -> Refused:
    return Refused(409, "conflict", message)


def unprocessable(message: str) -> Refused:
    return Refused(422, "unprocessable", message)


def forbidden(message: str) -> Refused:
    return Refused(403, "forbidden", message)
