"""A fake X API v2 (the two endpoints switchboard uses), for the real tweepy client.

    with FakeX() as x:
        config = ChannelConfig(..., options={"api_url": x.url}, secrets=x.credentials)
        x.script(duplicate(), RateLimit(time.time() + 2), Hang(1.0))
        ...
        assert x.texts == ["hello"]

Like X it refuses a tweet whose text equals a live tweet's (403 duplicate
content) and one longer than 280 characters as X weighs them (twitter-text's
config v3: CJK and emoji 2, any URL 23), and answers 401 without an
OAuth 1.0a header (or with another consumer key than the one it was given).
Error bodies have X's problem shape: {"title", "detail", "type", "status"}.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass

from twitter_text import parse_tweet

from tests.fakes.server import Answer, FakeServer, Reply, Request

DUPLICATE_DETAIL = "You are not allowed to create a Tweet with duplicate content."
TOO_LONG_DETAIL = ("Your Tweet text is too long. For more information on how Twitter determines "
                   "text length, see https://github.com/twitter/twitter-text.")
TITLES = {400: "Invalid Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
          429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
          503: "Service Unavailable", 504: "Gateway Timeout"}
_TWEET = re.compile(r"^/2/tweets/(?P<id>[0-9]+)$")


def problem(status: int, detail: str | None = None) -> dict[str, object]:
    title = TITLES.get(status, "Error")
    return {"title": title, "detail": detail or title, "type": "about:blank", "status": status}


def duplicate() -> Reply:
    """X's answer to a tweet it considers a duplicate, scripted (nothing is applied)."""
    return Reply(403, problem(403, DUPLICATE_DETAIL))


@dataclass
class Tweet:
    id: str
    text: str
    deleted: bool = False


class FakeX(FakeServer):
    def __init__(self, consumer_key: str = "fake-consumer-key") -> None:
        super().__init__()
        self.consumer_key = consumer_key
        self.tweets: list[Tweet] = []  # every tweet created, deleted ones included
        self._ids = itertools.count(1790000000000000001)

    @property
    def credentials(self) -> dict[str, str]:
        """Secrets for a ChannelConfig that this fake accepts."""
        return {"consumer_key": self.consumer_key, "consumer_secret": "fake-consumer-secret",
                "access_token": "fake-access-token", "access_token_secret": "fake-token-secret"}

    @property
    def live(self) -> list[Tweet]:
        with self._lock:
            return [t for t in self.tweets if not t.deleted]

    @property
    def texts(self) -> list[str]:
        """Texts of the tweets on the timeline now, oldest first."""
        return [t.text for t in self.live]

    def route(self, request: Request) -> Answer:
        if not self._authorised(request):
            return self.error(401)
        if request.method == "POST" and request.path == "/2/tweets":
            return self._create(request)
        match = _TWEET.match(request.path)
        if request.method == "DELETE" and match:
            return self._delete(match["id"])
        return self.error(404)

    def error(self, status: int, message: str | None = None) -> Answer:
        if status == 400:
            detail = message or "One or more parameters to your request was invalid."
            return Answer(400, {"errors": [{"message": detail}], "title": TITLES[400],
                                "detail": detail,
                                "type": "https://api.twitter.com/2/problems/invalid-request"})
        return Answer(status, problem(status, message))

    def rate_limited(self, reset_at: float | None) -> Answer:
        headers = {"x-rate-limit-limit": "200", "x-rate-limit-remaining": "0"}
        if reset_at is not None:
            # X gives the reset as whole epoch seconds; round up so the client
            # is never told a time before the one the test asked for.
            headers["x-rate-limit-reset"] = str(math.ceil(reset_at))
        return Answer(429, problem(429), headers)

    def _authorised(self, request: Request) -> bool:
        auth = request.header("Authorization") or ""
        return auth.startswith("OAuth ") and f'oauth_consumer_key="{self.consumer_key}"' in auth

    def _create(self, request: Request) -> Answer:
        try:
            text = request.json().get("text")
        except (ValueError, AttributeError):
            text = None
        if not isinstance(text, str) or not text:
            return self.error(400, "The `text` field is required.")
        if parse_tweet(text).weightedLength > 280:
            return self.error(403, TOO_LONG_DETAIL)
        if any(t.text == text and not t.deleted for t in self.tweets):
            return self.error(403, DUPLICATE_DETAIL)
        tweet = Tweet(id=str(next(self._ids)), text=text)
        self.tweets.append(tweet)
        return Answer(201, {"data": {"id": tweet.id, "text": text,
                                     "edit_history_tweet_ids": [tweet.id]}})

    def _delete(self, tweet_id: str) -> Answer:
        tweet = next((t for t in self.tweets if t.id == tweet_id and not t.deleted), None)
        if tweet is None:
            return self.error(404, f"Could not find tweet with id: [{tweet_id}].")
        tweet.deleted = True
        return Answer(200, {"data": {"deleted": True}})
