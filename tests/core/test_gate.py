"""The gate's copy of the holds as a second daemon keeps it in step with the store:
what it holds, and one hold dropped without touching the others."""

from __future__ import annotations

from switchboard.gate import Gate


def test_the_gate_lists_every_hold_and_drops_one_without_the_others() -> None:
    gate = Gate()
    gate.hold_many(["web", "social"], 1, ["marketing"])
    gate.hold("web", 2, ["marketing", "operational"], until=100.0)  # in cooldown
    assert gate.held() == {("web", 1), ("social", 1), ("web", 2)}
    gate.drop("web", 1)  # another daemon voided it: the store no longer has it
    assert gate.held() == {("social", 1), ("web", 2)}
    assert gate.decide("web", "marketing", 50.0).incident_id == 2
    gate.drop("web", 2)
    gate.drop("web", 2)  # gone already: nothing happens
    gate.drop("nowhere", 7)
    assert gate.held() == {("social", 1)}
    assert gate.decide("web", "marketing", 50.0).allowed
    assert gate.controlling("web", 50.0) == []


def test_a_cooldown_ends_at_its_time_and_names_the_earliest_incident() -> None:
    gate = Gate()
    gate.hold("web", 5, ["marketing"])
    gate.hold("web", 3, ["marketing"])
    decision = gate.decide("web", "marketing", 10.0)
    assert (decision.allowed, decision.incident_id) == (False, 3)
    assert "under incident INC-3" in decision.reason
    gate.set_until(3, 20.0)
    gate.release(5)
    assert "in cooldown after incident INC-3" in gate.decide("web", "marketing", 10.0).reason
    assert gate.decide("web", "operational", 10.0).allowed
    assert gate.decide("web", "marketing", 20.0).allowed  # the cooldown is over
    assert gate.channels_under_control(10.0) == {"web"}
