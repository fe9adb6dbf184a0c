from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from switchboard.feeds import Signal
from switchboard.feeds.signal import Status
from switchboard.feeds.snapshot import GONE_NOTE, Snapshot

T0 = datetime(2024, 5, 23, 1, 0, tzinfo=UTC)


def signal(key: str, status: Status = "firing", title: str = "Tunnel closed",
           at: datetime = T0, **labels: str) -> Signal:
    return Signal(source="met", key=key, status=status, title=title, at=at,
                  labels=labels or {"severity": "Severe"}, annotations={"note": "first"})


def test_the_first_poll_emits_everything_present_once() -> None:
    present = [signal("a"), signal("b", status="resolved")]
    emit, snapshot = Snapshot().diff(present, T0)
    assert emit == present
    assert snapshot.diff(present, T0)[0] == []


def test_unchanged_items_are_not_emitted_again() -> None:
    _, snapshot = Snapshot().diff([signal("a")], T0)
    later = signal("a", at=T0 + timedelta(minutes=5))
    assert snapshot.diff([later], T0 + timedelta(minutes=5))[0] == []


def test_a_changed_title_or_label_or_status_is_emitted() -> None:
    _, snapshot = Snapshot().diff([signal("a")], T0)
    for changed in (signal("a", title="Tunnel closed until 18:00"),
                    signal("a", severity="Extreme"), signal("a", status="resolved")):
        assert snapshot.diff([changed], T0)[0] == [changed]


def test_a_change_in_annotations_alone_is_not_emitted() -> None:
    _, snapshot = Snapshot().diff([signal("a")], T0)
    reworded = replace(signal("a"), annotations={"note": "reworded"})
    assert snapshot.diff([reworded], T0)[0] == []


def test_a_firing_item_that_disappears_is_resolved() -> None:
    _, snapshot = Snapshot().diff([signal("a"), signal("b")], T0)
    later = T0 + timedelta(minutes=1)

    emit, snapshot = snapshot.diff([signal("a")], later)

    [gone] = emit
    assert (gone.key, gone.status, gone.at) == ("b", "resolved", later)
    assert gone.title == "Tunnel closed" and gone.labels == {"severity": "Severe"}
    assert gone.annotations == {"note": "first", "resolution": GONE_NOTE}
    assert snapshot.diff([signal("a")], later)[0] == []  # resolved once, not every poll


def test_a_resolved_item_that_disappears_is_not_emitted() -> None:
    _, snapshot = Snapshot().diff([signal("a", status="resolved")], T0)
    assert snapshot.diff([], T0)[0] == []


def test_an_item_that_comes_back_fires_again() -> None:
    _, snapshot = Snapshot().diff([signal("a")], T0)
    _, snapshot = snapshot.diff([], T0)
    assert snapshot.diff([signal("a")], T0)[0] == [signal("a")]


def test_of_two_items_with_one_key_the_newest_stands() -> None:
    alert = signal("a", at=T0)
    cancel = signal("a", status="resolved", at=T0 + timedelta(minutes=1))
    for order in ([alert, cancel], [cancel, alert]):
        assert Snapshot().diff(order, T0)[0] == [cancel]
