"""Channels in the store: each one's last error, so that `switchboard channels`
still shows why an account failed after a restart or a reload."""

from __future__ import annotations

from collections.abc import Sequence

from switchboard.store.people import PeopleRecords

# (channel, at, message, permanent); `at` None: the channel's last send succeeded.
ChannelError = tuple[str, float | None, str, bool]


class ChannelRecords(PeopleRecords):
    def save_channel_errors(self, errors: Sequence[ChannelError]) -> None:
        """The channels' errors as they stand now, in one transaction (not synced to
        disk: losing the newest on a power cut loses a message, never a post)."""
        with self.transaction(durable=False) as db:
            for channel, at, message, permanent in errors:
                if at is None:
                    db.execute("DELETE FROM channel_errors WHERE channel = ?", (channel,))
                else:
                    db.execute("INSERT INTO channel_errors (channel, at, message, permanent) "
                               "VALUES (?, ?, ?, ?) ON CONFLICT (channel) DO UPDATE SET "
                               "at = excluded.at, message = excluded.message, "
                               "permanent = excluded.permanent",
                               (channel, at, message, int(permanent)))

    def channel_errors(self) -> dict[str, tuple[float, str, bool]]:
        return {channel: (at, message, bool(permanent)) for channel, at, message, permanent
                in self._db.execute("SELECT channel, at, message, permanent "
                                    "FROM channel_errors")}
