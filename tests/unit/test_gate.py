"""The gate: one question, answered from the channel holds."""

from __future__ import annotations

from switchboard.gate import Gate


def test_an_open_channel_lets_every_kind_through() -> None:
    gate = Gate()
    assert gate.decide("outbox", "marketing", 100.0).allowed
    assert gate.decide("outbox", "operational", 100.0).allowed


def test_a_held_channel_suppresses_marketing_and_names_the_incident() -> None:
    gate = Gate()
    gate.hold("outbox", 3, ["marketing"])
    decision = gate.decide("outbox", "marketing", 100.0)
    assert not decision.allowed
    assert decision.incident_id == 3
    assert "INC-3" in decision.reason
    assert gate.decide("outbox", "operational", 100.0).allowed
    assert gate.decide("other", "marketing", 100.0).allowed


def test_the_hold_lasts_until_the_end_of_the_cooldown() -> None:
    gate = Gate()
    gate.hold("outbox", 1, ["marketing"])
    gate.set_until(1, 200.0)
    assert not gate.decide("outbox", "marketing", 199.9).allowed
    assert "cooldown" in gate.decide("outbox", "marketing", 150.0).reason
    assert gate.decide("outbox", "marketing", 200.0).allowed


def test_overlapping_incidents_hold_until_the_last_lets_go() -> None:
    gate = Gate()
    gate.hold("outbox", 1, ["marketing"])
    gate.hold("outbox", 2, ["marketing"])
    gate.release(1)
    decision = gate.decide("outbox", "marketing", 0.0)
    assert (decision.allowed, decision.incident_id) == (False, 2)
    assert gate.controlling("outbox", 0.0) == [2]
    gate.release(2)
    assert gate.decide("outbox", "marketing", 0.0).allowed
    assert gate.channels_under_control(0.0) == set()


def test_the_earliest_incident_is_the_one_named() -> None:
    gate = Gate()
    gate.hold("outbox", 5, ["marketing"])
    gate.hold("outbox", 2, ["marketing"])
    assert gate.decide("outbox", "marketing", 0.0).incident_id == 2


def test_only_incidents_not_yet_resolved_count_as_declared_on_a_channel() -> None:
    """An update is noted on the incidents still active, never on the many a busy
    channel may still be in cooldown for."""
    gate = Gate()
    gate.hold_many(["outbox", "other"], 1, ["marketing"])
    gate.hold("outbox", 2, ["marketing"])
    gate.set_until(1, 500.0)
    assert gate.controlling("outbox", 100.0) == [1, 2]
    assert gate.declared_on("outbox") == [2]
    assert gate.declared_on("other") == []
