"""`switchboard simulate`: timelines on a fake clock, compared with committed snapshots.

Regenerate the snapshots after an intended change with
`SWITCHBOARD_UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/runbooks` and review the diff.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from switchboard.runbooks import (
    ChannelInfo,
    Handover,
    ResolvePolicy,
    Runbook,
    Step,
    load_runbooks,
)
from switchboard.simulate import (
    format_text,
    load_signal,
    signal_from_json,
    simulate,
    to_json,
)
from switchboard.templates import Templates
from switchboard.textlength import weighted_length
from tests.runbooks.conftest import BASE, CHANNELS, Runbooks

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).parent
LONDON = ZoneInfo("Europe/London")
START = datetime(2024, 1, 15, 9, 0, tzinfo=UTC)
# The shipped config's channels (tests must not depend on token files or env).
SHIPPED_CHANNELS = {"outbox": ChannelInfo("outbox", "public", 280),
                    "ops-chat": ChannelInfo("ops-chat", "internal", 10000)}
CAP_SIGNAL = HERE / "data" / "cap-flood-warning.json"


def shipped() -> dict[str, Runbook]:
    return load_runbooks(ROOT / "runbooks", SHIPPED_CHANNELS, LONDON)


def check_snapshot(name: str, text: str) -> None:
    path = HERE / "snapshots" / f"{name}.txt"
    if os.environ.get("SWITCHBOARD_UPDATE_SNAPSHOTS") == "1":
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no snapshot {path}: run with SWITCHBOARD_UPDATE_SNAPSHOTS=1"
    assert text == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ["rail-disruption", "security-incident", "service-outage",
                                  "severe-weather"])
def test_the_timeline_of_each_shipped_runbook(name: str) -> None:
    timeline = simulate(shipped()[name], SHIPPED_CHANNELS, start=START, timezone=LONDON)
    check_snapshot(name, format_text(timeline))


def test_severe_weather_declared_by_a_cap_alert() -> None:
    signal = load_signal(CAP_SIGNAL, at=START)
    timeline = simulate(shipped()["severe-weather"], SHIPPED_CHANNELS, start=START,
                        signal=signal, timezone=LONDON)
    check_snapshot("severe-weather.cap", format_text(timeline))


def test_every_shipped_post_fits_its_channel() -> None:
    signal = load_signal(CAP_SIGNAL, at=START)
    for book in shipped().values():
        for sig in (None, signal):
            timeline = simulate(book, SHIPPED_CHANNELS, for_=timedelta(hours=6), start=START,
                                signal=sig, timezone=LONDON)
            assert [e for e in timeline.events if e.error] == []


def test_the_json_timeline_is_a_list_of_event_objects() -> None:
    timeline = simulate(shipped()["rail-disruption"], SHIPPED_CHANNELS, start=START,
                        timezone=LONDON)
    events = json.loads(json.dumps(to_json(timeline)))
    assert isinstance(events, list)
    assert all(set(e) == {"offset", "offset_seconds", "at", "event", "step", "action",
                          "channels", "text", "summary", "error"} for e in events)
    assert [e["offset_seconds"] for e in events] == sorted(e["offset_seconds"] for e in events)
    assert [e["event"] for e in events][:2] == ["declared", "handover"]
    assert [e["event"] for e in events][-4:] == ["resolved", "resolve-step", "cooldown-ended",
                                                 "held-posts"]
    hold = events[2]
    assert hold == {
        "offset": "+0m", "offset_seconds": 0, "at": "2024-01-15T09:00:00+00:00",
        "event": "step", "step": "holding-statement", "action": "post",
        "channels": ["outbox"],
        "text": "We know services are disrupted: Rail service disruption. Our teams are on "
                "it. Next update here by 09:30.",
        "summary": hold["summary"], "error": None}
    escalate = next(e for e in events if e["step"] == "escalate")
    assert (escalate["offset"], escalate["channels"]) == ("+1h", ["ops-chat"])


def test_steps_due_after_resolution_do_not_run() -> None:
    timeline = simulate(shipped()["rail-disruption"], SHIPPED_CHANNELS,
                        for_=timedelta(minutes=45), start=START, timezone=LONDON)
    steps = [(e.step, e.offset) for e in timeline.events if e.event == "step"]
    assert steps == [("holding-statement", timedelta(0)), ("retract-recent-offers", timedelta(0)),
                     ("update-due", timedelta(minutes=30))]
    assert timeline.events[-1].offset == timedelta(minutes=45, hours=2)


def test_a_reminder_stays_silent_after_a_runbook_post(books: Runbooks) -> None:
    book = books.load(BASE + """\
  - name: update
    every: 20m
    action: post
    template: "Still working on it"
  - name: update-due
    every: 30m
    action: remind
""")
    timeline = simulate(book, CHANNELS, for_=timedelta(hours=1), start=START)
    reminders = [e for e in timeline.events if e.action == "remind"]
    assert [e.summary for e in reminders] == [
        "stays silent: the runbook posted at +20m, within the last 30m"]


def test_auto_resolution_needs_a_signal(books: Runbooks) -> None:
    book = books.load(BASE + "resolve:\n  auto: true\n")
    by_hand = simulate(book, CHANNELS, start=START)
    resolved = next(e for e in by_hand.events if e.event == "resolved")
    assert "by hand (resolve.auto needs a feed signal" in resolved.summary
    signal = signal_from_json({"event": "Storm"}, at=START)
    by_signal = simulate(book, CHANNELS, start=START, signal=signal)
    cleared = next(e for e in by_signal.events if e.event == "signal-resolved")
    assert cleared.offset == timedelta(hours=2, minutes=50)


def test_a_failing_template_is_recorded_not_fatal() -> None:
    broken = Templates().compile("{{ signal.labels.route }}")
    book = Runbook(name="broken", title="Broken", severity="major", scope=None,
                   suppress=("marketing",), handover=Handover(notify=("ops-chat",)),
                   steps=(Step("hold", "post", at=timedelta(0), template=broken),),
                   resolve=ResolvePolicy())
    timeline = simulate(book, CHANNELS, start=START)
    [failed] = [e for e in timeline.events if e.step == "hold"]
    assert failed.error == "undefined: 'dict object' has no attribute 'route'"
    assert failed.summary.endswith("recorded on the timeline and reported to ops-chat")
    assert timeline.events[-1].event == "held-posts"


def test_a_post_too_long_for_a_channel_is_flagged() -> None:
    long = Templates().compile("x" * 300)
    book = Runbook(name="long", title="Long", severity="major", scope=None,
                   suppress=("marketing",), handover=Handover(),
                   steps=(Step("hold", "post", at=timedelta(0), template=long),),
                   resolve=ResolvePolicy())
    timeline = simulate(book, CHANNELS, start=START)
    errors = [e.error for e in timeline.events if e.step == "hold"]
    assert errors == ["too long for outbox, short (300 characters, limit 100)"]


def test_a_signal_file_may_be_flat_labels(tmp_path: Path) -> None:
    path = tmp_path / "signal.json"
    path.write_text('{"event": "Flood Warning", "level": 3}', encoding="utf-8")
    signal = load_signal(path, at=START)
    assert (signal.source, signal.status, signal.labels) == (
        "simulated-feed", "firing", {"event": "Flood Warning", "level": "3"})


def test_a_signal_file_may_be_shaped_like_a_signal() -> None:
    signal = load_signal(CAP_SIGNAL, at=START)
    assert (signal.source, signal.title, signal.labels["areaDesc"],
            signal.annotations["instruction"]) == (
        "met-warnings", "Flood warning for the River Stour", "Kent; East Sussex",
        "Move valuables upstairs.")


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "1:2: not JSON: Expecting property name enclosed in double quotes"),
    ("[1, 2]", "must be a JSON object"),
    ('{"labels": {"a": {"b": 1}}}', "labels.a must be a string, number or boolean"),
    ('{"status": "open"}', "status must be firing or resolved, not 'open'"),
])
def test_a_bad_signal_file_is_explained(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "signal.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError) as caught:
        load_signal(path)
    assert str(caught.value).startswith(f"{path}")
    assert message in str(caught.value)


def test_offsets_are_elapsed_time_across_a_clock_change() -> None:
    # 00:30 GMT on the night the clocks go forward: +3h is 04:30 BST, not 03:30.
    start = datetime(2024, 3, 31, 0, 30, tzinfo=LONDON)
    timeline = simulate(shipped()["rail-disruption"], SHIPPED_CHANNELS, start=start,
                        timezone=LONDON)
    resolved = next(e for e in timeline.events if e.event == "resolved")
    assert resolved.at.astimezone(LONDON).strftime("%H:%M %Z") == "04:30 BST"
    hold = next(e for e in timeline.events if e.step == "holding-statement")
    # 01:00 GMT is the moment the clocks jump to 02:00 BST.
    assert hold.text is not None and hold.text.endswith("Next update here by 02:00.")


def test_a_post_is_measured_as_its_channels_platform_counts() -> None:
    cjk = Templates().compile("運" * 141)  # 141 characters, 282 as X weighs them
    book = Runbook(name="cjk", title="CJK", severity="major", scope=("x-main", "outbox"),
                   suppress=("marketing",), handover=Handover(),
                   steps=(Step("hold", "post", at=timedelta(0), template=cjk),),
                   resolve=ResolvePolicy())
    channels = {"outbox": ChannelInfo("outbox", "public", 280),
                "x-main": ChannelInfo("x-main", "public", 280, weighted_length)}
    timeline = simulate(book, channels, start=START)
    errors = [e.error for e in timeline.events if e.step == "hold"]
    assert errors == ["too long for x-main (282 characters, limit 280)"]
