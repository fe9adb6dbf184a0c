"""SIGKILL at random moments while thousands of posts go out, an incident declared midway.

CI runs the `ci` profile (6 kills, 1,500 posts); `SWITCHBOARD_CRASH=full` runs
the design's 20 kills over 5,000 posts, and `SWITCHBOARD_CRASH_SEED` replays a
plan. `python -m tests.reliability.crash` runs the full profile on its own and
prints the figures recorded in docs/reliability.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.crash import CrashRun, profile_from_env


@pytest.mark.integration
def test_kill_9_at_random_moments_loses_nothing_sends_nothing_twice_and_leaks_nothing(
        tmp_path: Path) -> None:
    profile, seed = profile_from_env()
    print(f"crash profile {profile.name}, seed {seed} (SWITCHBOARD_CRASH_SEED={seed} replays "
          "the plan)")
    report = CrashRun(tmp_path, profile, seed).run()
    print(report.summary())
    assert report.violations == [], "\n".join(report.violations)
    assert len(report.rounds) == profile.kills
    assert sum(report.states.values()) == profile.posts
    assert report.kills_mid_dispatch > 0, "no kill landed while posts were going out"
    assert report.suppressed > 0, "the incident held nothing: the run did not test the gate"
    if profile.platforms:
        assert all(report.platform_posts.values()), (
            f"a platform channel published nothing: {report.platform_posts}")
