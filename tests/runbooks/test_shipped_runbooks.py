"""The runbooks in runbooks/ load clean against the shipped config."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchboard import config
from switchboard.runbooks import ChannelInfo, Runbook, channel_infos, load_runbooks

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("rail-disruption", "security-incident", "service-outage", "severe-weather")


@pytest.fixture(scope="module")
def shipped() -> tuple[config.Config, dict[str, ChannelInfo], dict[str, Runbook]]:
    cfg = config.load(ROOT / "config" / "switchboard.yaml")
    channels = channel_infos(cfg.channels)
    return cfg, channels, load_runbooks(cfg.runbooks_dir, channels, cfg.timezone)


def test_every_shipped_runbook_loads_clean(
        shipped: tuple[config.Config, dict[str, ChannelInfo], dict[str, Runbook]]) -> None:
    _, _, runbooks = shipped
    assert sorted(runbooks) == list(SHIPPED)


def test_the_config_rules_name_shipped_runbooks(
        shipped: tuple[config.Config, dict[str, ChannelInfo], dict[str, Runbook]]) -> None:
    _, _, runbooks = shipped
    config.load(ROOT / "config" / "switchboard.yaml", runbook_names=set(runbooks))


def test_rail_disruption_follows_the_design(
        shipped: tuple[config.Config, dict[str, ChannelInfo], dict[str, Runbook]]) -> None:
    _, channels, runbooks = shipped
    rail = runbooks["rail-disruption"]
    assert rail.public_channels(channels) == ("outbox",)
    assert [(s.name, s.action) for s in rail.steps] == [
        ("holding-statement", "post"), ("retract-recent-offers", "retract"),
        ("update-due", "remind"), ("escalate", "notify")]
    assert rail.steps[3].channels == ("ops-chat",)
    assert (rail.resolve.auto, rail.resolve.cooldown.total_seconds(),
            rail.resolve.held_posts) == (False, 7200, "review")


def test_severe_weather_resolves_itself_and_spaces_out_held_posts(
        shipped: tuple[config.Config, dict[str, ChannelInfo], dict[str, Runbook]]) -> None:
    _, _, runbooks = shipped
    policy = runbooks["severe-weather"].resolve
    assert (policy.auto, policy.quiet_period.total_seconds(), policy.held_posts,
            policy.min_spacing.total_seconds()) == (True, 900, "reschedule", 1200)


def test_the_security_runbook_posts_only_the_holding_statement(
        shipped: tuple[config.Config, dict[str, ChannelInfo], dict[str, Runbook]]) -> None:
    _, _, runbooks = shipped
    book = runbooks["security-incident"]
    public = [s for s in (*book.steps, *book.resolve.steps) if s.action in ("post", "retract")]
    assert [s.name for s in public] == ["holding-statement"]
    template = public[0].template
    assert template is not None and "incident.title" not in template.source
