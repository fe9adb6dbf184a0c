"""Teams in the config, pending posts in the store, the sign-in throttle and the
team rules, each on its own (no daemon)."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchboard import config
from switchboard.auth import Caller
from switchboard.model import NewPost
from switchboard.people import check_approver, check_post, may_act, state_after_edit
from switchboard.refusals import Refused
from switchboard.store import SqliteStore
from switchboard.throttle import Throttle
from switchboard.yamldoc import InvalidFile

BASE = """\
runbooks_dir: runbooks
channels:
  - {id: lib-fb, kind: outbox}
  - {id: lib-x, kind: outbox}
  - {id: parks-fb, kind: outbox, approval: required}
"""


def load(tmp_path: Path, teams: str) -> config.Config:
    path = tmp_path / "switchboard.yaml"
    path.write_text(BASE + teams)
    return config.load(path, env={})


def problems(tmp_path: Path, teams: str) -> list[str]:
    with pytest.raises(InvalidFile) as caught:
        load(tmp_path, teams)
    return [str(p).replace(str(tmp_path / "switchboard.yaml"), "CONFIG")
            for p in caught.value.problems]


def test_teams_own_channels_and_approval_comes_from_the_team_or_the_channel(
        tmp_path: Path) -> None:
    cfg = load(tmp_path, "teams:\n  - {id: libraries, channels: [lib-fb, lib-x], "
                         "approval: required}\n")
    team = cfg.team_of("lib-x")
    assert team is not None and team.id == "libraries"
    assert cfg.team_of("parks-fb") is None
    assert cfg.needs_approval("lib-fb") and cfg.needs_approval("parks-fb")


def test_a_team_naming_an_unknown_channel_is_refused_at_its_line(tmp_path: Path) -> None:
    found = problems(tmp_path, "teams:\n  - id: libraries\n    channels: [lib-fb, lib-tv]\n")
    assert len(found) == 1
    assert found[0].startswith("CONFIG:8:24: teams[0].channels[1]: no channel named 'lib-tv'")


def test_a_channel_in_two_teams_is_refused_naming_the_first_owner(tmp_path: Path) -> None:
    found = problems(tmp_path, "teams:\n  - {id: libraries, channels: [lib-fb]}\n"
                               "  - {id: archives, channels: [lib-x, lib-fb]}\n")
    assert len(found) == 1
    assert found[0].startswith("CONFIG:8:38: teams[1].channels[1]: channel 'lib-fb' is "
                               "already in team 'libraries'")


def test_a_bad_approval_value_and_a_duplicate_team_are_both_reported(tmp_path: Path) -> None:
    found = problems(tmp_path, "teams:\n  - {id: libraries, channels: [lib-fb], "
                               "approval: maybe}\n  - {id: libraries, channels: [lib-x]}\n")
    assert any("must be one of required, none" in p for p in found)
    assert any("duplicate team id 'libraries'" in p for p in found)


def test_the_dispatcher_claim_never_takes_a_post_pending_approval(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path / "sb.db")
    ids = store.add_posts([NewPost("lib-fb", "marketing", "waiting", due_at=100.0,
                                   state="pending_approval"),
                           NewPost("lib-fb", "marketing", "ready", due_at=100.0)], "libby", 50.0)
    assert [p.id for p in store.claim_due(now=1e9, limit=100)] == [ids[1]]
    assert store.mark_missed(before=1e9, now=1e9) == []  # nor is it ever `missed`
    assert store.post(ids[0]).state == "pending_approval"  # type: ignore[union-attr]


def test_failed_sign_ins_slow_down_per_key_and_a_success_clears_the_name() -> None:
    now = [1000.0]
    throttle = Throttle(lambda: now[0], free=3, cap=60)
    for _ in range(3):
        assert throttle.wait("name:a", "client:x") == 0
        throttle.failed("name:a", "client:x")
    assert throttle.wait("name:a") == 2.0
    assert throttle.wait("name:b", "client:x") == 2.0  # the same client, another name
    assert throttle.wait("name:b", "client:y") == 0
    now[0] += 2.0
    throttle.failed("name:a")
    assert throttle.wait("name:a") == 4.0  # doubling
    for _ in range(10):
        now[0] += 100
        throttle.failed("name:a")
    assert throttle.wait("name:a") == 60  # capped
    throttle.succeeded("name:a")
    assert throttle.wait("name:a") == 0
    throttle.failed("name:c", "client:z")
    throttle.forgive("client:z")
    assert "client:z" not in throttle._failures


def test_a_flood_of_names_keeps_the_throttle_bounded() -> None:
    throttle = Throttle(lambda: 0.0, max_keys=100)
    for i in range(1000):
        throttle.failed(f"name:{i}")
    assert len(throttle._failures) <= 100


def _cfg(tmp_path: Path) -> config.Config:
    return load(tmp_path, "teams:\n  - {id: libraries, channels: [lib-fb, lib-x]}\n")


def person(role: str, **teams: str) -> Caller:
    return Caller("p", role, person=True, teams={t: frozenset(r.split(",")) for t, r
                                                 in teams.items()})


def test_marketing_on_a_team_channel_needs_that_team_and_names_it(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    check_post(person("viewer", libraries="marketing"), "lib-fb", "marketing", cfg)
    check_post(person("admin"), "lib-fb", "marketing", cfg)
    check_post(Caller("marketing", "marketing"), "lib-fb", "marketing", cfg)  # a machine
    with pytest.raises(Refused, match="belongs to team libraries") as caught:
        check_post(person("marketing", parks="marketing"), "lib-fb", "marketing", cfg)
    assert caught.value.status == 403
    # Channels of no team stay with the organisation-wide marketing role.
    check_post(person("marketing"), "parks-fb", "marketing", cfg)
    with pytest.raises(Refused):
        check_post(person("viewer", libraries="marketing"), "parks-fb", "marketing", cfg)


def test_only_another_approver_of_the_team_approves(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    store = SqliteStore.open(tmp_path / "sb.db")
    [post_id] = store.add_posts([NewPost("lib-fb", "marketing", "t", 1e9,
                                         state="pending_approval")], "p", 0.0)
    post = store.post(post_id)
    assert post is not None
    other = Caller("q", "viewer", person=True, teams={"libraries": frozenset({"approver"})})
    check_approver(other, post, cfg)
    with pytest.raises(Refused, match="another approver"):
        check_approver(person("viewer", libraries="approver"), post, cfg)  # its author
    with pytest.raises(Refused, match="approver role of team libraries"):
        check_approver(person("viewer", libraries="marketing"), post, cfg)
    with pytest.raises(Refused):
        check_approver(Caller("ops-desk", "ops"), post, cfg)


def test_an_edited_post_needs_approval_again_where_its_channel_asks_for_it(
        tmp_path: Path) -> None:
    cfg = load(tmp_path, "teams:\n  - {id: libraries, channels: [lib-fb], "
                         "approval: required}\n")
    store = SqliteStore.open(tmp_path / "sb.db")
    ids = store.add_posts([NewPost("lib-fb", "marketing", "t", 1e9),
                           NewPost("lib-x", "marketing", "t", 1e9),
                           NewPost("lib-fb", "operational", "t", 1e9)], "p", 0.0)
    posts = store.posts(ids)
    assert [state_after_edit(p, cfg) for p in posts] == ["pending_approval", "scheduled",
                                                         "scheduled"]
    marketer = person("viewer", libraries="marketing")
    assert [may_act(marketer, p, cfg) for p in posts] == [True, False, True]
