"""The store contract: what every backend (SQLite, PostgreSQL) must do alike.

Each test runs on both; `make_store` opens a second store on the same
database where a test needs two daemons sharing it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from switchboard.model import AuditEntry, HeldPlan, Hold, IncidentHolds, NewPost, SendOutcome
from switchboard.poststates import IllegalMove, PostOrigin, PostState
from switchboard.store import (
    FEED_EVENT_RETENTION,
    INTERRUPTED_SEND,
    MIGRATIONS,
    KeyedRequest,
    KeyTaken,
    RequestKey,
    SqliteStore,
    StoreUnavailable,
    fingerprint,
    row_key,
)
from tests.store.conftest import DUPLICATE, Backend, MakeStore, wait_until_waiting_for_a_lock

S = PostState


def marketing(channel: str, due: float, text: str = "buy") -> NewPost:
    return NewPost(channel, "marketing", text, due)


def declare(store: Backend, channels: list[str], now: float = 5.0, **extra: Any) -> int:
    fields: dict[str, Any] = {
        "title": "outage", "runbook": "default", "severity": "major", "channels": channels,
        "suppress": ["marketing"], "reason": None, "source": "api", "signal_key": None,
        "signal": None, "actor": "ops", "now": now}
    return store.declare(**(fields | extra))


# -- posts ---------------------------------------------------------------------


def test_posts_come_back_as_stored_with_times_to_the_microsecond(store: Backend) -> None:
    due = 1_800_000_000.123456
    ids = store.add_posts([marketing("outbox", due, "first"),
                           NewPost("x", "operational", "second", due + 1, link="https://e.x",
                                   expires_at=due + 60)], "mia", 1_799_999_999.5)
    first, second = store.posts(ids)
    assert (first.id, first.channel, first.text, first.state, first.due_at) == (
        ids[0], "outbox", "first", S.SCHEDULED, due)
    assert (second.link, second.expires_at, second.created_by, second.created_at) == (
        "https://e.x", due + 60, "mia", 1_799_999_999.5)
    assert store.post(ids[1]) == second and store.post(999) is None
    assert store.next_due() == due
    assert store.count_by_state() == {"scheduled": 2}
    assert [p.id for p in store.list_posts(channel="x")] == [ids[1]]
    assert store.post_history(ids[0]) == [
        {"at": 1_799_999_999.5, "from": None, "to": "scheduled", "actor": "mia",
         "reason": "created"}]


def test_new_posts_get_new_ids_from_either_of_two_stores(make_store: MakeStore) -> None:
    one, two = make_store(), make_store()
    a = one.add_posts([marketing("outbox", 10.0)], "m", 1.0)
    b = two.add_posts([marketing("outbox", 11.0), marketing("outbox", 12.0)], "m", 1.0)
    c = one.add_posts([marketing("outbox", 13.0)], "m", 1.0)
    assert len({*a, *b, *c}) == 4
    assert b == sorted(b) and min(c) > max(b) > max(a)


def test_a_request_key_answers_a_repeat_and_a_racing_repeat_makes_nothing(
        store: Backend) -> None:
    key = RequestKey("ops POST /api/v1/send", "k-1", fingerprint({"text": "x"}))
    [post] = store.add_posts([NewPost("outbox", "operational", "x", 1.0, state=S.QUEUED)],
                             "ops", 1.0, request=key, immediate=True)
    assert store.keyed(key.scope, "k-1") == KeyedRequest(key.fingerprint, "send", [post], 201)
    assert store.keyed(key.scope, "k-2") is None
    assert store.is_immediate(post)
    with pytest.raises(KeyTaken):
        store.add_posts([NewPost("outbox", "operational", "x", 1.0)], "ops", 1.0, request=key)
    assert [p.id for p in store.list_posts()] == [post]


def test_an_import_is_all_rows_or_none_and_importing_twice_makes_nothing(
        store: Backend) -> None:
    rows = [(row_key("outbox", 10.0 + i, f"p{i}"), marketing("outbox", 10.0 + i, f"p{i}"))
            for i in range(3)]
    with pytest.raises(IllegalMove):
        store.import_posts([*rows, ("bad", NewPost("outbox", "marketing", "x", 1.0,
                                                   state=S.PUBLISHED))], "m", 1.0)
    assert store.list_posts() == [] and store.count_by_state() == {}
    created, existing = store.import_posts(rows, "m", 1.0)
    assert (len(created), existing) == (3, [])
    assert store.import_posts(rows, "m", 2.0) == ([], created)


def test_a_move_happens_only_from_an_expected_state_and_an_illegal_one_changes_nothing(
        store: Backend) -> None:
    ids = store.add_posts([marketing("outbox", 10.0 + i) for i in range(3)], "m", 1.0)
    assert store.transition(ids[:2], S.CANCELLED, (S.SCHEDULED,), 2.0, "m", "no") == ids[:2]
    assert store.transition(ids, S.QUEUED, (S.SCHEDULED,), 3.0, "dispatcher") == ids[2:]
    with pytest.raises(IllegalMove):
        store.transition(ids, S.PUBLISHED, (S.SCHEDULED,), 4.0, "m")
    assert [p.state for p in store.posts(ids)] == [S.CANCELLED, S.CANCELLED, S.QUEUED]
    assert store.count_by_state() == {"cancelled": 2, "queued": 1}


def test_editing_a_queued_post_sends_it_back_to_be_claimed_with_the_new_values(
        store: Backend) -> None:
    [post] = store.add_posts([marketing("outbox", 10.0)], "m", 1.0)
    store.transition([post], S.QUEUED, (S.SCHEDULED,), 2.0, "dispatcher")
    assert store.update_post_fields(post, {"text": "new", "due_at": 20.0}, ("queued",), 3.0,
                                    "m", "edited")
    edited = store.post(post)
    assert edited is not None and (edited.text, edited.due_at, edited.state) == (
        "new", 20.0, S.SCHEDULED)
    assert not store.update_post_fields(post, {"text": "late"}, ("queued",), 4.0, "m", "x")
    with pytest.raises(ValueError, match="not editable"):
        store.update_post_fields(post, {"state": "published"}, ("scheduled",), 4.0, "m", "x")


# -- claims and the gate in the store ---------------------------------------------


def test_due_posts_are_claimed_once_and_those_on_a_held_channel_suppressed(
        store: Backend) -> None:
    ids = store.add_posts([marketing("outbox", 10.0), marketing("x", 11.0),
                           NewPost("x", "operational", "status", 12.0),
                           marketing("outbox", 50.0)], "m", 1.0)
    incident = declare(store, ["x"])
    claimed, held = store.claim_due_held(20.0, 10)
    assert [p.id for p in claimed] == [ids[0], ids[2]]
    assert all(p.state == S.QUEUED for p in claimed)
    assert held == [(ids[1], "x")]
    assert store.claim_due_held(20.0, 10) == ([], [])
    suppressed = store.post(ids[1])
    assert suppressed is not None and suppressed.incident_id == incident
    assert [e.event for e in store.timeline(incident)] == ["declared", "posts_suppressed"]
    assert store.next_due() == 50.0


def test_a_hold_declared_by_another_daemon_binds_the_next_claim_to_send(
        make_store: MakeStore) -> None:
    leader, standby = make_store(), make_store()
    ids = leader.add_posts([marketing("outbox", 10.0), marketing("x", 10.0)], "m", 1.0)
    queued = [p.id for p in leader.claim_due_held(10.0, 10)[0]]
    assert queued == ids
    declare(standby, ["x"], now=10.5)
    claim = leader.claim_sending(queued, 11.0)
    assert claim.sending == [ids[0]]
    assert claim.suppressed == [(ids[1], "x")]
    assert leader.claim_sending(queued, 12.0).sending == []


def test_a_claim_waiting_on_a_declaration_in_flight_obeys_it(
        make_store: MakeStore, make_backend: MakeStore) -> None:
    leader, standby = make_store(), make_backend()
    [post] = leader.add_posts([marketing("x", 10.0)], "m", 1.0)
    leader.claim_due_held(10.0, 10)
    results: list[Any] = []

    def claim() -> None:
        try:
            results.append(leader.claim_sending([post], 11.0))
        except StoreUnavailable as exc:  # gave up waiting: nothing recorded either
            results.append(exc.reason)

    with standby.transaction() as db:
        db.execute("INSERT INTO incidents (id, title, runbook, severity, state, channels, "
                   "suppress, source, declared_at, declared_by) VALUES (77, 't', 'r', 'major', "
                   "'active', '[\"x\"]', '[\"marketing\"]', 'api', 10.5, 'ops')")
        db.execute("INSERT INTO channel_control (channel, incident_id) VALUES ('x', 77)")
        claimer = threading.Thread(target=claim)
        claimer.start()
        wait_until_waiting_for_a_lock(standby)
    claimer.join()
    [result] = results
    assert result == "busy" or (result.sending, result.suppressed) == ([], [(post, "x")])
    stored = leader.post(post)
    assert stored is not None and stored.state in (S.SUPPRESSED, S.QUEUED)


def _claim_all(store: Backend, start: threading.Barrier, take: Callable[[], list[int]],
               out: list[int]) -> None:
    start.wait()
    while True:
        try:
            got = take()
        except StoreUnavailable as exc:
            assert exc.reason == "busy"
            continue
        if not got:
            return
        out += got


def test_two_daemons_claiming_the_same_due_posts_never_both_get_one(
        make_store: MakeStore) -> None:
    one, two = make_store(), make_store()
    ids = one.add_posts([marketing(f"c{i % 7}", 10.0 + i * 0.001) for i in range(300)], "m", 1.0)
    start = threading.Barrier(2)
    got: tuple[list[int], list[int]] = ([], [])
    threads = [threading.Thread(target=_claim_all, args=(
        s, start, lambda s=s: [p.id for p in s.claim_due_held(20.0, 10)[0]], out))
        for s, out in zip((one, two), got, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not set(got[0]) & set(got[1])
    assert sorted(got[0] + got[1]) == ids
    assert len(two.list_posts(["queued"])) == 300


def test_two_daemons_starting_the_same_sends_never_both_start_one(
        make_store: MakeStore) -> None:
    one, two = make_store(), make_store()
    ids = one.add_posts([NewPost(f"c{i % 5}", "marketing", "x", 10.0, state=S.QUEUED)
                         for i in range(200)], "m", 1.0)
    start = threading.Barrier(2)
    got: tuple[list[int], list[int]] = ([], [])
    chunks = [ids[i:i + 10] for i in range(0, len(ids), 10)]

    def sender(store: Backend, order: list[list[int]], out: list[int]) -> None:
        start.wait()
        for chunk in order:
            while True:
                try:
                    out += store.claim_sending(chunk, 11.0).sending
                    break
                except StoreUnavailable as exc:
                    assert exc.reason == "busy"

    threads = [threading.Thread(target=sender, args=(one, chunks, got[0])),
               threading.Thread(target=sender, args=(two, chunks, got[1]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not set(got[0]) & set(got[1])
    assert sorted(got[0] + got[1]) == ids
    history = [h["to"] for h in one.post_history(ids[0])]
    assert history == ["queued", "sending"]


def test_outcomes_are_recorded_for_posts_that_were_sending(store: Backend) -> None:
    ids = store.add_posts([NewPost("outbox", "marketing", "x", 10.0, state=S.QUEUED),
                           NewPost("outbox", "marketing", "y", 10.0, state=S.QUEUED)], "m", 1.0)
    assert store.claim_sending(ids, 11.0).sending == ids
    store.record_sends([SendOutcome(ids[0], S.PUBLISHED, "r-1", 11.5),
                        SendOutcome(ids[1], S.FAILED, error="429", reason="rate limited")], 12.0)
    published, failed = store.posts(ids)
    assert (published.state, published.remote_id, published.published_at) == (
        S.PUBLISHED, "r-1", 11.5)
    assert (failed.state, failed.error) == (S.FAILED, "429")
    assert [p.id for p in store.published_since(["outbox"], 11.0, ["marketing"])] == [ids[0]]
    assert store.published_since(["outbox"], 11.6, ["marketing"]) == []
    with pytest.raises(IllegalMove):
        store.record_sends([SendOutcome(ids[0], S.SCHEDULED)], 13.0)


def test_a_restart_requeues_unsent_marks_interrupted_sends_unknown_and_fails_immediates(
        store: Backend) -> None:
    queued, sending = store.add_posts(
        [NewPost("outbox", "marketing", "q", 10.0, state=S.QUEUED),
         NewPost("outbox", "marketing", "s", 10.0, state=S.QUEUED)], "m", 1.0)
    [immediate] = store.add_posts([NewPost("outbox", "operational", "now", 1.0,
                                           state=S.QUEUED)], "ops", 1.0, immediate=True)
    store.claim_sending([sending], 2.0)
    assert store.recover(3.0) == {"requeued": 1, "unknown": 1, "not_sent": 1}
    states = {p.id: p for p in store.posts([queued, sending, immediate])}
    assert [states[i].state for i in (queued, sending, immediate)] == [
        S.SCHEDULED, S.UNKNOWN, S.FAILED]
    assert states[immediate].error == INTERRUPTED_SEND


def test_posts_due_too_long_ago_are_missed_not_sent_in_a_burst(store: Backend) -> None:
    old, recent = store.add_posts([marketing("outbox", 10.0), marketing("outbox", 100.0)],
                                  "m", 1.0)
    assert store.mark_missed(50.0, 101.0) == [old]
    assert [p.id for p in store.claim_due(101.0, 10)] == [recent]


# -- incidents -------------------------------------------------------------------------


def test_a_declaration_holds_its_channels_until_resolved_and_the_cooldown(
        store: Backend) -> None:
    incident = declare(store, ["x", "outbox", "x"][:2], signal_key="pd:1",
                       signal={"id": "P1"}, reason="db down")
    assert sorted(store.holds(), key=lambda h: h.channel) == [
        Hold("outbox", incident, None), Hold("x", incident, None)]
    found = store.incident(incident)
    assert found is not None and (found.channels, found.signal, found.held_done) == (
        ["x", "outbox"], {"id": "P1"}, False)
    assert [i.id for i in store.incidents()] == [incident]
    assert store.resolve(incident, actor="ops", note="fine", now=20.0, cooldown_until=80.0)
    assert not store.resolve(incident, actor="ops", note="again", now=21.0, cooldown_until=90.0)
    assert {h.until for h in store.holds()} == {80.0}
    assert store.incidents() == [] and [i.id for i in store.incidents(True, None)] == [incident]
    assert [i.id for i in store.incidents_awaiting_release()] == [incident]
    assert store.last_resolved_at("pd:1") == 20.0 and store.last_resolved_at("pd:2") is None
    store.set_incident_fields(incident, held_done=True)
    assert store.incidents_awaiting_release() == []
    store.release_holds(incident)
    assert store.holds() == []
    assert [e.event for e in store.timeline(incident)] == ["declared", "resolved"]


def test_one_active_incident_per_signal_key(store: Backend) -> None:
    declare(store, ["x"], signal_key="am:group")
    with pytest.raises(DUPLICATE):
        declare(store, ["outbox"], signal_key="am:group")
    assert len(store.incidents()) == 1


def test_an_incident_declared_with_a_request_key_is_found_by_it(store: Backend) -> None:
    key = RequestKey("ops POST /api/v1/incidents", "k", fingerprint({"title": "t"}))
    incident = declare(store, ["x"], request=key)
    assert store.keyed(key.scope, "k") == KeyedRequest(key.fingerprint, "incident",
                                                       [incident], 201)


def test_a_voided_incident_requeues_or_holds_what_it_suppressed(store: Backend) -> None:
    a, b = store.add_posts([marketing("x", 10.0), marketing("x", 11.0)], "m", 1.0)
    incident = declare(store, ["x"])
    assert [i for i, _ in store.claim_due_held(12.0, 10)[1]] == [a, b]
    assert store.void(incident, actor="ops", reason="false alarm", now=13.0,
                      requeue=[(a, 30.0)], review=[b])
    assert not store.void(incident, actor="ops", reason="again", now=14.0, requeue=[],
                          review=[])
    requeued, held = store.posts([a, b])
    assert (requeued.state, requeued.due_at, held.state) == (S.SCHEDULED, 30.0, S.HELD)
    assert store.holds() == []
    voided = store.incident(incident)
    assert voided is not None and voided.state == "voided"


def test_held_posts_go_back_at_their_own_times_or_expire_in_one_train(store: Backend) -> None:
    ids = store.add_posts([marketing("x", 10.0 + i) for i in range(3)], "m", 1.0)
    incident = declare(store, ["x"])
    store.claim_due_held(20.0, 10)
    assert store.suppress_posts([], incident, 20.0) == []
    moved, gone = store.reschedule_held([(ids[0], 40.0), (ids[1], 41.0)], [ids[2]], 30.0,
                                        "incidents", "released", "expired while held")
    assert (moved, gone) == (ids[:2], ids[2:])
    assert [(p.state, p.due_at) for p in store.posts(ids)] == [
        (S.SCHEDULED, 40.0), (S.SCHEDULED, 41.0), (S.EXPIRED, 12.0)]
    assert store.reschedule_held([(ids[0], 50.0)], [], 31.0, "i", "r", "e") == ([], [])


def test_queued_posts_suppressed_for_an_incident_are_on_its_timeline(store: Backend) -> None:
    ids = store.add_posts([NewPost("x", "marketing", "a", 1.0, state=S.QUEUED)], "m", 1.0)
    incident = declare(store, ["x"])
    assert store.suppress_posts(ids, incident, 6.0) == ids
    store.log(incident, 7.0, "note", "ops", {"text": "looking"})
    store.note_updates(incident, 8.0, 8.0, [("dispatcher", {"post": 9})])
    entries = store.timeline(incident)
    assert [(e.event, e.detail) for e in entries[1:]] == [
        ("posts_suppressed", {"posts": ids}), ("note", {"text": "looking"}),
        ("post_sent", {"post": 9})]
    found = store.incident(incident)
    assert found is not None and found.last_operational_at == 8.0


def test_a_runbook_step_occurrence_runs_once_whichever_daemon_asks(
        make_store: MakeStore) -> None:
    one, two = make_store(), make_store()
    incident = declare(one, ["x"])
    assert one.claim_step(incident, "notify", 1, 10.0)
    assert not two.claim_step(incident, "notify", 1, 10.5)
    assert two.claim_step(incident, "notify", 2, 11.0)
    one.finish_step(incident, "notify", 1, "ok")
    assert two.step_runs(incident) == [("notify", 1, 10.0, "ok"), ("notify", 2, 11.0, "started")]


def test_a_feed_event_is_remembered_for_its_retention_then_forgotten(store: Backend) -> None:
    store.remember_event("pagerduty", "e-1", 100.0)
    store.remember_event("pagerduty", "e-1", 101.0)
    assert store.event_seen("pagerduty", "e-1") and not store.event_seen("other", "e-1")
    store.remember_event("pagerduty", "e-2", 100.0 + FEED_EVENT_RETENTION + 1)
    assert not store.event_seen("pagerduty", "e-1")
    assert store.event_seen("pagerduty", "e-2")


# -- listings ---------------------------------------------------------------------------


def test_listings_page_in_due_order_and_count_what_they_would_list(store: Backend) -> None:
    ids = store.add_posts([marketing("outbox" if i % 2 else "x", 100.0 - i) for i in range(9)],
                          "m", 1.0)
    store.transition(ids[:3], S.QUEUED, (S.SCHEDULED,), 2.0, "dispatcher")
    first = store.page_posts(["scheduled", "queued"], limit=4)
    assert [p.due_at for p in first] == [92.0, 93.0, 94.0, 95.0]
    rest = store.page_posts(["scheduled", "queued"], after=(first[-1].due_at, first[-1].id))
    assert [p.due_at for p in rest] == [96.0, 97.0, 98.0, 99.0, 100.0]
    assert [p.due_at for p in store.page_posts(channel="outbox", due_from=93.0,
                                               due_to=98.0)] == [93.0, 95.0, 97.0]
    assert store.count_posts(["scheduled"]) == 6
    assert store.count_posts(["scheduled", "queued"], channel="x") == 5
    assert store.count_posts(due_from=99.0) == 2
    older = declare(store, ["x"])
    newer = declare(store, ["outbox"])
    store.resolve(older, actor="o", note=None, now=9.0, cooldown_until=9.0)
    store.set_incident_fields(older, held_done=1)
    assert [([i.id for i in page], n) for page, n in (
        store.page_incidents(), store.page_incidents(True), store.page_incidents(True, newer))
    ] == [([newer], 1), ([newer, older], 2), ([older], 2)]


def test_the_change_marks_move_with_every_timeline_entry_and_post_event(
        store: Backend) -> None:
    assert store.change_marks() == (0, 0)
    store.add_posts([marketing("x", 10.0)], "m", 1.0)
    after_post = store.change_marks()
    declare(store, ["x"])
    after_incident = store.change_marks()
    assert after_post[1] > 0 and after_incident[0] > 0 and after_incident[1] == after_post[1]


# -- people, sessions, audit -----------------------------------------------------------------


def test_people_their_teams_and_tokens(store: Backend) -> None:
    assert store.add_person("mia", "viewer", {"web": ["editor", "editor"]}, 1.0)
    assert not store.add_person("mia", "admin", {}, 2.0)
    assert store.update_person("mia", 3.0, role="operator", disabled=True,
                               password_hash="h", teams={"ops": ["approver"]})
    assert not store.update_person("nobody", 3.0, role="viewer")
    mia = store.person("mia")
    assert mia is not None and (mia.role, mia.disabled, mia.password_hash, mia.teams) == (
        "operator", True, "h", {"ops": ("approver",)})
    store.add_person("abe", "viewer", {}, 4.0)
    assert [p.name for p in store.people()] == ["abe", "mia"] and store.people_count() == 2
    first = store.add_person_token("mia", "d1", 5.0)
    second = store.add_person_token("mia", "d2", 6.0)
    assert second > first and store.person_token("d1") == (first, "mia", "d1")
    with pytest.raises(DUPLICATE):
        store.add_person_token("abe", "d1", 7.0)
    assert store.revoke_person_tokens("mia", 8.0) == 2
    assert store.person_token("d1") is None
    assert store.person_tokens("mia") == [{"id": first, "created_at": 5.0, "revoked_at": 8.0},
                                          {"id": second, "created_at": 6.0, "revoked_at": 8.0}]


def test_the_audit_is_kept_in_order_and_filtered_by_person_team_and_time(
        store: Backend) -> None:
    entries = [AuditEntry(1.0, "mia", "token", "POST /posts", "1", ("web",), 201),
               AuditEntry(2.0, None, "file", "POST /incidents", None, ("ops", "web"), 201),
               AuditEntry(3.0, "abe", "session", "DELETE /posts/1", "1", (), 403)]
    for entry in entries:
        store.record_audit(entry)
    assert store.audit() == entries
    assert store.audit(person="mia") == entries[:1]
    assert store.audit(teams=["ops"]) == entries[1:2]
    assert store.audit(teams=[]) == []
    assert store.audit(since=2.0, limit=1) == entries[1:2]


def test_console_sessions_are_found_touched_and_ended(store: Backend) -> None:
    store.add_console_session("dig", "mia", "csrf", 1.0)
    store.add_console_session("old", "abe", "c2", 1.0)
    store.touch_console_session("dig", 5.0)
    assert store.console_session("dig") == ("mia", "csrf", 5.0)
    assert store.end_idle_console_sessions(3.0) == 1
    assert store.console_session("old") is None
    store.end_console_session("dig")
    assert store.console_session("dig") is None


def test_the_install_id_is_made_once_per_store_and_kept(make_store: MakeStore) -> None:
    first = make_store().install_id()
    assert len(first) == 16 and int(first, 16) >= 0
    assert make_store().install_id() == first


def test_a_write_that_waits_too_long_for_another_daemon_answers_busy_and_records_nothing(
        make_store: MakeStore, make_backend: MakeStore) -> None:
    one, two = make_store(), make_backend()
    [post] = one.add_posts([marketing("outbox", 10.0)], "m", 1.0)
    with two.transaction():
        two._transition([post], S.QUEUED, (S.SCHEDULED,), 2.0, "dispatcher")
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as caught:
            one.transition([post], S.CANCELLED, (S.SCHEDULED,), 3.0, "m")
        assert caught.value.reason == "busy" and time.monotonic() - started < 2
    stored = one.post(post)
    assert stored is not None and stored.state == S.QUEUED


def test_a_new_store_is_at_the_latest_schema_and_sound(store: Backend) -> None:
    assert store.schema_version() == len(MIGRATIONS)
    assert store.integrity_ok()


def test_the_same_file_imported_by_two_daemons_at_once_is_stored_once(
        make_store: MakeStore) -> None:
    one, two = make_store(), make_store()
    rows = [(row_key("outbox", 10.0 + i, f"p{i}"), marketing("outbox", 10.0 + i, f"p{i}"))
            for i in range(50)]
    start = threading.Barrier(2)
    results: list[tuple[list[int], list[int]]] = []

    def import_file(store: Backend) -> None:
        start.wait()
        while True:
            try:
                results.append(store.import_posts(rows, "m", 1.0))
                return
            except StoreUnavailable as exc:
                assert exc.reason == "busy"

    threads = [threading.Thread(target=import_file, args=(s,)) for s in (one, two)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    created = sorted(results, key=lambda r: len(r[1]))[0][0]
    assert sorted(results, key=lambda r: len(r[1])) == [(created, []), ([], created)]
    assert len(one.list_posts()) == 50


# -- the end of a cooldown, channels' errors, upkeep ------------------------------


@pytest.mark.parametrize("policy", ["drop", "review", "reschedule"])
def test_the_end_of_a_cooldown_moves_the_held_posts_in_parts_and_counts_them_all(
        store: Backend, policy: str) -> None:
    incident = declare(store, ["x"])
    ids = store.add_posts([marketing("x", 10.0), marketing("x", 11.0, "old")], "m", 1.0)
    store.claim_due_held(12.0, 10)  # both suppressed by the hold
    assert [p.state for p in store.posts(ids)] == [S.SUPPRESSED, S.SUPPRESSED]
    reason = f"held-post policy {policy}"
    plan = (HeldPlan(policy, reason, ids=tuple(ids),
                     to_state=S.DROPPED if policy == "drop" else S.HELD)
            if policy != "reschedule" else
            HeldPlan(policy, reason, moves=((ids[0], 100.0),), expired=(ids[1],),
                     expired_reason="would expire"))
    for part in plan.chunks(1):  # in parts, one transaction each, as the daemon does
        store.move_held(part, 50.0)
    assert store.holds() != [] and not store.incident(incident).held_done  # type: ignore[union-attr]
    outcome = store.finish_cooldown(incident, plan, 51.0)
    expected = {"drop": {"dropped": 2}, "review": {"held": 2},
                "reschedule": {"rescheduled": 1, "expired": 1}}[policy]
    assert outcome == expected
    states = {"drop": [S.DROPPED] * 2, "review": [S.HELD] * 2,
              "reschedule": [S.SCHEDULED, S.EXPIRED]}[policy]
    assert [p.state for p in store.posts(ids)] == states
    assert store.holds() == []
    assert store.incident(incident).held_done  # type: ignore[union-attr]
    [released] = [e for e in store.timeline(incident) if e.event == "channels_released"]
    assert released.detail == {"held_posts": policy, **expected}


def test_a_channels_last_error_is_kept_until_cleared(store: Backend) -> None:
    assert store.channel_errors() == {}
    store.save_channel_errors([("x", 10.5, "403: token revoked", True),
                               ("web", 11.0, "timeout", False)])
    store.save_channel_errors([("web", 12.0, "502", False)])  # a newer one replaces it
    assert store.channel_errors() == {"x": (10.5, "403: token revoked", True),
                                      "web": (12.0, "502", False)}
    store.save_channel_errors([("x", None, "", False)])  # its next send succeeded
    assert store.channel_errors() == {"web": (12.0, "502", False)}


def test_a_healthy_store_passes_its_checks_and_its_upkeep_leaves_it_working(
        store: Backend) -> None:
    store.check_file()  # raises StoreUnavailable once the store has failed for good
    store.start_checkpoints(0.01)
    ids = store.add_posts([marketing("x", float(i)) for i in range(50)], "m", 1.0)
    # A few rounds of upkeep (a thread of the backend's; PostgreSQL has none) after them.
    if isinstance(store, SqliteStore):
        rounds = store.upkeep_rounds
        while store.upkeep_rounds < rounds + 3:
            time.sleep(0.005)
    assert len(store.posts(ids)) == 50 and store.integrity_ok()
    assert store.schema_version() == len(MIGRATIONS) and store.failure is None


def test_a_new_post_is_stored_as_its_stored_form_says(store: Backend) -> None:
    new = [NewPost("x", "marketing", "Sale", 100.0, link="https://e.x", expires_at=200.0),
           NewPost("y", "operational", "Update", 50.0, state=S.QUEUED, incident_id=7,
                   origin=PostOrigin.SEND_NOW)]
    ids = store.add_posts(new, "mia", 10.5)
    assert store.posts(ids) == [p.stored(i, "mia", 10.5) for p, i in zip(new, ids, strict=True)]


def test_a_reading_of_the_holds_has_every_hold_committed_before_its_time(
        make_store: MakeStore) -> None:
    """What a leader confirms to a standby's caller (`holds_seen`): a declaration
    committed before the reading's time is in the reading, by whichever daemon;
    the reading names each incident once, however many channels it holds."""
    here, there = make_store(), make_store()
    at, ends = here.holds_by_incident()
    assert ends == {} and at > 0
    first = declare(there, ["outbox", "x"])
    second = declare(there, ["x"])
    committed = there.db_time()
    assert there.resolve(first, actor="ops", note=None, now=20.0, cooldown_until=80.0)
    at, ends = here.holds_by_incident()
    assert at >= committed and ends == {first: 80.0, second: None}
    assert here.holds_of([first]) == [IncidentHolds(first, ["marketing"], 80.0,
                                                    ["outbox", "x"])]
    assert here.holds_of([second, 999]) == [IncidentHolds(second, ["marketing"], None, ["x"])]
    assert here.holds_of([]) == []
