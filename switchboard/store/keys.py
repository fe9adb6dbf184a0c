"""Idempotency-Key records: what a key first made, so a repeat gets that answer."""

from __future__ import annotations

import json
from collections.abc import Sequence

from switchboard.store.core import KeyedRequest, KeyTaken, RequestKey, StoreCore


class RequestKeys(StoreCore):
    def keyed(self, scope: str, key: str) -> KeyedRequest | None:
        row = self._db.execute("SELECT fingerprint, kind, refs, status FROM request_keys "
                               "WHERE scope = ? AND key = ?", (scope, key)).fetchone()
        if row is None:
            return None
        return KeyedRequest(row[0], row[1], [int(i) for i in json.loads(row[2])], int(row[3]))

    def _keep(self, request: RequestKey, kind: str, refs: Sequence[int], status: int,
              now: float) -> None:
        # A repeat racing its first request fails here (primary key): nothing is made twice.
        try:
            self._db.execute("INSERT INTO request_keys (scope, key, fingerprint, kind, refs, "
                             "status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (request.scope, request.key, request.fingerprint, kind,
                              json.dumps(list(refs)), status, now))
        except Exception as exc:
            if self._duplicate(exc):
                raise KeyTaken() from exc
            raise
