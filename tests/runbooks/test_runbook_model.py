"""The loaded model: defaults, step timing and targets, scope resolution."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from switchboard.config import ChannelConfig
from switchboard.runbooks import ResolvePolicy, Step, channel_infos
from switchboard.templates import Context, IncidentView
from tests.runbooks.conftest import BASE, CHANNELS, Runbooks

FULL = BASE + """\
  - name: retract
    at: 0m
    action: retract
    published_within: 30m
  - name: update-due
    every: 30m
    action: remind
  - name: hourly
    every: 1h
    start: 10m
    action: notify
    template: "{{ incident.id }} still open"
resolve:
  auto: true
  quiet_period: 15m
  cooldown: 2h
  held_posts: reschedule
  min_spacing: 20m
  steps:
    - action: post
      template: all clear
    - action: notify
      template: "{{ incident.id }} resolved"
    - name: thanks
      action: post
      template: thank you
"""


def test_defaults_fill_what_a_minimal_runbook_leaves_out(books: Runbooks) -> None:
    book = books.load("name: rb\ntitle: Minimal\n")
    assert (book.severity, book.scope, book.suppress, book.steps) == ("major", None,
                                                                      ("marketing",), ())
    assert (book.handover.role, book.handover.notify) == ("ops", ())
    assert book.resolve == ResolvePolicy()
    assert book.resolve.held_posts == "review"
    assert book.resolve.quiet_period == timedelta(minutes=10)
    assert book.resolve.cooldown == timedelta(0)


def test_it_reads_every_part_of_a_runbook(books: Runbooks) -> None:
    book = books.load(FULL)
    assert [s.name for s in book.steps] == ["hold", "retract", "update-due", "hourly"]
    retract = book.steps[1]
    assert (retract.action, retract.published_within, retract.template) == \
        ("retract", timedelta(minutes=30), None)
    policy = book.resolve
    assert (policy.auto, policy.quiet_period, policy.cooldown, policy.held_posts,
            policy.min_spacing) == (True, timedelta(minutes=15), timedelta(hours=2),
                                    "reschedule", timedelta(minutes=20))


def test_unnamed_resolve_steps_get_stable_names(books: Runbooks) -> None:
    book = books.load(FULL)
    assert [s.name for s in book.resolve.steps] == ["resolve-1", "resolve-2", "thanks"]
    assert book.step("resolve-2") is book.resolve.steps[1]


def test_once_steps_run_at_their_offset(books: Runbooks) -> None:
    hold = books.load(FULL).steps[0]
    assert list(hold.offsets(timedelta(hours=3))) == [timedelta(0)]
    assert list(hold.offsets(timedelta(0))) == []


def test_repeating_steps_run_every_interval_until_resolution(books: Runbooks) -> None:
    book = books.load(FULL)
    remind, hourly = book.steps[2], book.steps[3]
    assert list(remind.offsets(timedelta(hours=2))) == [
        timedelta(minutes=30), timedelta(hours=1), timedelta(minutes=90)]
    assert list(hourly.offsets(timedelta(hours=2, minutes=10))) == [
        timedelta(minutes=10), timedelta(minutes=70)]


def test_posts_go_to_the_incident_channels_unless_named(books: Runbooks) -> None:
    book = books.load(FULL.replace("    channels: [outbox]\n", ""))
    assert book.steps[0].channels is None
    assert book.steps[0].targets(("outbox", "mastodon")) == ("outbox", "mastodon")
    assert book.resolve.steps[0].targets(("mastodon",)) == ("mastodon",)


def test_internal_steps_default_to_the_handover_channels(books: Runbooks) -> None:
    book = books.load(FULL)
    assert book.steps[2].channels == ("ops-chat",)
    assert book.resolve.steps[1].channels == ("ops-chat",)


def test_reminders_and_the_handover_notice_have_default_texts(books: Runbooks) -> None:
    book = books.load(FULL)
    incident = IncidentView(id="INC-9", title="Points failure", severity="major",
                            runbook="rb", declared_at=datetime(2024, 1, 1, tzinfo=UTC),
                            channels=("outbox",))
    ctx = Context(incident, incident.declared_at, channel="ops-chat")
    remind, notice = book.steps[2].template, book.handover.notice
    assert remind is not None and notice is not None
    assert remind.render(ctx) == ("INC-9: no operational update in the last 30m; one is due "
                                  "now (Points failure).")
    assert notice.render(ctx) == ("INC-9 declared: Points failure. ops has control of outbox; "
                                  "marketing posts are held.")


def test_scope_all_means_every_public_channel(books: Runbooks) -> None:
    book = books.load(BASE)
    assert book.public_channels(CHANNELS) == ("outbox", "mastodon", "short")
    assert book.public_channels(CHANNELS.values()) == ("outbox", "mastodon", "short")


def test_a_scope_list_is_taken_as_written(books: Runbooks) -> None:
    book = books.load(BASE.replace("handover:", "scope: [short, outbox]\nhandover:"))
    assert book.public_channels(CHANNELS) == ("short", "outbox")


def test_channel_limits_come_from_the_config_or_the_kind() -> None:
    infos = channel_infos([
        ChannelConfig(id="outbox", kind="outbox"),
        ChannelConfig(id="big", kind="outbox", max_length=1000),
        ChannelConfig(id="ops", kind="console", audience="internal"),
    ])
    assert infos["outbox"].max_length == 280
    assert infos["big"].max_length == 1000
    assert infos["ops"].audience == "internal"


def test_a_step_is_plain_data() -> None:
    step = Step("s", "retract", at=timedelta(0), published_within=timedelta(minutes=5))
    assert step.first == timedelta(0)
    assert step == Step("s", "retract", at=timedelta(0), published_within=timedelta(minutes=5))
