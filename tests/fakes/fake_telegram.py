"""A fake Telegram Bot API (sendMessage, deleteMessage) for one channel, for aiohttp.

    with FakeTelegram() as tg:
        config = ChannelConfig(..., options={"api_url": tg.url, "chat_id": tg.chat_id},
                               secrets={"bot_token": tg.bot_token})
        tg.script(RateLimit(time.time() + 2))

The shapes follow https://core.telegram.org/bots/api:
- requests go to `/bot<token>/<method>` with a JSON body; every answer is
  `{"ok": true, "result": ...}` or `{"ok": false, "error_code", "description"}`
  ("Making requests"); `sendMessage` returns the Message (`message_id`, `chat`,
  `date`, `text`), `deleteMessage` returns `true`.
- a wrong token is 401 "Unauthorized"; a bot that is not an administrator of
  the channel gets 403 "Forbidden: bot is not a member of the channel chat";
  a text over 4096 characters is 400 "Bad Request: message is too long".
- flood control is 429 "Too Many Requests: retry after N" with
  `parameters.retry_after` (ResponseParameters), in whole seconds.
- a channel message older than 48 hours cannot be deleted by a bot
  (deleteMessage: "a message can only be deleted if it was sent less than 48
  hours ago"): 400 "Bad Request: message can't be deleted for everyone"; an
  unknown one is 400 "Bad Request: message to delete not found".

Like Telegram it posts a repeated sendMessage a second time.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field

from tests.fakes.server import Answer, FakeServer, Request

DELETE_WINDOW = 48 * 3600


@dataclass
class ChannelMessage:
    message_id: int
    text: str
    date: float = field(default_factory=time.time)
    deleted: bool = False


class FakeTelegram(FakeServer):
    def __init__(self, bot_token: str = "123456789:AAfakeBotTokenForTests",
                 chat_id: str = "@council_updates") -> None:
        super().__init__()
        self.bot_token = bot_token
        self.chat_id = chat_id
        self.messages: list[ChannelMessage] = []  # every message sent, deleted ones included
        self._ids = itertools.count(101)

    @property
    def live(self) -> list[ChannelMessage]:
        with self._lock:
            return [m for m in self.messages if not m.deleted]

    @property
    def texts(self) -> list[str]:
        return [m.text for m in self.live]

    def age(self, message_id: int, seconds: float) -> None:
        """Make a message look `seconds` old."""
        with self._lock:
            for m in self.messages:
                if m.message_id == message_id:
                    m.date = time.time() - seconds

    def route(self, request: Request) -> Answer:
        prefix = f"/bot{self.bot_token}/"
        if not request.path.startswith(prefix):
            return self._fail(401, "Unauthorized")
        method = request.path[len(prefix):].split("?")[0]
        body = request.json() or {}
        if str(body.get("chat_id")) != self.chat_id:
            return self._fail(400, "Bad Request: chat not found")
        if method == "sendMessage":
            return self._send(body)
        if method == "deleteMessage":
            return self._delete(body)
        return self._fail(404, "Not Found")

    def error(self, status: int, message: str | None = None) -> Answer:
        defaults = {400: "Bad Request: message text is empty", 401: "Unauthorized",
                    403: "Forbidden: bot is not a member of the channel chat",
                    500: "Internal Server Error", 502: "Bad Gateway"}
        return self._fail(status, message or defaults.get(status, f"Error {status}"))

    def rate_limited(self, reset_at: float | None) -> Answer:
        if reset_at is None:
            return Answer(429, {"ok": False, "error_code": 429,
                                "description": "Too Many Requests"})
        wait = max(1, math.ceil(reset_at - time.time()))
        return Answer(429, {"ok": False, "error_code": 429,
                            "description": f"Too Many Requests: retry after {wait}",
                            "parameters": {"retry_after": wait}})

    def _fail(self, code: int, description: str) -> Answer:
        return Answer(code, {"ok": False, "error_code": code, "description": description})

    def _send(self, body: dict[str, object]) -> Answer:
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            return self._fail(400, "Bad Request: message text is empty")
        if len(text.encode("utf-16-le")) // 2 > 4096:
            return self._fail(400, "Bad Request: message is too long")
        message = ChannelMessage(message_id=next(self._ids), text=text)
        self.messages.append(message)
        return Answer(200, {"ok": True, "result": {
            "message_id": message.message_id, "date": int(message.date), "text": text,
            "chat": {"id": -1001234567890, "title": "Council updates", "type": "channel",
                     "username": self.chat_id.lstrip("@")},
            "sender_chat": {"id": -1001234567890, "title": "Council updates",
                            "type": "channel"}}})

    def _delete(self, body: dict[str, object]) -> Answer:
        message = next((m for m in self.messages
                        if m.message_id == body.get("message_id") and not m.deleted), None)
        if message is None:
            return self._fail(400, "Bad Request: message to delete not found")
        if time.time() - message.date > DELETE_WINDOW:
            return self._fail(400, "Bad Request: message can't be deleted for everyone")
        message.deleted = True
        return Answer(200, {"ok": True, "result": True})
