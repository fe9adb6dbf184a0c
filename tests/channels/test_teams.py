"""Teams specifics: the Workflows message with one Adaptive Card."""

from __future__ import annotations

from dataclasses import replace

import pytest

from switchboard.channels.base import ChannelError
from tests.channels.harness import Harness, message, run
from tests.fakes.fake_teams import SIGNATURE, FakeTeams


def fake(h: Harness) -> FakeTeams:
    assert isinstance(h.fake, FakeTeams)
    return h.fake


def test_a_post_is_an_adaptive_card_with_its_link_as_a_button(teams: Harness) -> None:
    run(teams.publish(message(text="Control room staffed from 06:00",
                              link="https://intranet.example/rota")))
    [request] = teams.requests
    assert "sp=%2Ftriggers%2Fmanual%2Frun" in request.path, "the signed URL is sent as given"
    body = request.json()
    assert body["type"] == "message"
    [attachment] = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    assert card["body"] == [{"type": "TextBlock", "text": "Control room staffed from 06:00",
                             "wrap": True}]
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Open link",
                                "url": "https://intranet.example/rota"}]


def test_a_refused_signature_is_permanent_and_never_quotes_the_url(teams: Harness) -> None:
    stale = fake(teams).url.replace(SIGNATURE, "stale")
    teams.config = replace(teams.config, secrets={"url": stale})
    with pytest.raises(ChannelError) as caught:
        run(teams.publish(message()))
    assert caught.value.permanent and caught.value.reason == "auth"
    assert "DirectApiAuthorizationRequired" in caught.value.message
    assert "stale" not in caught.value.message
    assert fake(teams).cards == []


def test_a_teams_channel_is_for_internal_audiences_by_default(teams: Harness) -> None:
    assert teams.channel().audience == "internal"
