"""The alert rules in config/prometheus: valid, unit-tested, documented, and
only about metrics the daemon really exports."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.operations.metric_names import exported, used_in
from tests.operations.required_tools import require_tool, run_tool

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "config" / "prometheus" / "switchboard-rules.yml"
RULE_TESTS = REPO / "config" / "prometheus" / "switchboard-rules.test.yml"
SEVERITIES = {"critical", "warning", "info"}
RUNBOOK_BASE = "https://switchboard.example/docs/operations#"


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load(RULES)["groups"] for rule in group["rules"]
            if "alert" in rule]


def alert_names() -> list[str]:
    return [rule["alert"] for rule in alert_rules()]


def test_the_rules_file_defines_the_alerts_operations_rely_on() -> None:
    assert {"SwitchboardDown", "SwitchboardFeedStale", "SwitchboardPublishFailures",
            "SwitchboardOperationalUpdateOverdue", "SwitchboardIncidentOpenLong",
            "SwitchboardConfigReloadFailed", "SwitchboardPostsUnknown"} <= set(alert_names())
    assert len(alert_names()) == len(set(alert_names())), "duplicate alert names"


def test_promtool_finds_the_rules_valid() -> None:
    promtool = require_tool("promtool")
    result = run_tool(promtool, "check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    promtool = require_tool("promtool")
    result = run_tool(promtool, "test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_and_a_quiet_test_case() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    tests = load(RULE_TESTS)
    assert tests["rule_files"] == [RULES.name]
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = set(alert_names())
    assert names - firing == set(), "alerts never shown firing"
    assert names - quiet == set(), "alerts never shown staying quiet"
    assert (firing | quiet) - names == set(), "tests name alerts that do not exist"


@pytest.mark.parametrize("name", alert_names())
def test_alert_is_annotated_for_the_person_paged(name: str) -> None:
    rule = next(r for r in alert_rules() if r["alert"] == name)
    annotations = rule.get("annotations", {})
    for key in ("summary", "description", "runbook_url"):
        assert str(annotations.get(key, "")).strip(), f"{name} has no {key}"
    assert annotations["runbook_url"] == RUNBOOK_BASE + name.lower()


@pytest.mark.parametrize("name", alert_names())
def test_alert_is_labelled_for_routing(name: str) -> None:
    labels = next(r for r in alert_rules() if r["alert"] == name).get("labels", {})
    assert labels.get("severity") in SEVERITIES
    # Alertmanager routes service="switchboard" to people, never back into
    # switchboard's own feed (docs/operations.md, Alertmanager).
    assert labels.get("service") == "switchboard"


@pytest.mark.parametrize("name", alert_names())
def test_alert_uses_only_metrics_the_daemon_exports(name: str) -> None:
    expr = next(r for r in alert_rules() if r["alert"] == name)["expr"]
    assert used_in(expr) - exported() == set()


@pytest.mark.parametrize("name", alert_names())
def test_alert_selects_the_switchboard_job(name: str) -> None:
    expr = next(r for r in alert_rules() if r["alert"] == name)["expr"]
    selectors = re.findall(r"\b(switchboard_[a-z_]+|up)\b(\{[^}]*\})?", expr)
    assert selectors
    for metric, matchers in selectors:
        assert 'job="switchboard"' in matchers, f"{metric} in {name} lacks the job matcher"


def test_metric_name_extraction_ignores_label_values() -> None:
    expr = 'rate(switchboard_posts_failed_total{job="switchboard", instance=~"$instance"}[5m])'
    assert used_in(expr) == {"switchboard_posts_failed_total"}
    assert used_in("switchboard_no_such_thing") - exported() == {"switchboard_no_such_thing"}
