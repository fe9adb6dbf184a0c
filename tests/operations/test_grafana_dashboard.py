"""The Grafana dashboard and its provisioning files in config/grafana."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.operations.metric_names import exported, used_in
from tests.operations.required_tools import require_tool, run_tool

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "config" / "grafana"
DASHBOARD = GRAFANA / "switchboard.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRID_COLUMNS = 24

# What an operator must be able to see, as the expression that shows it.
REQUIRED = {
    "channel control per channel": r"by \(channel\) \(switchboard_channel_under_incident\{",
    "active incidents": r"switchboard_incidents_active\{",
    "publish rate": r"rate\(switchboard_posts_published_total\{",
    "suppress rate": r"rate\(switchboard_posts_suppressed_total\{",
    "failure rate": r"rate\(switchboard_posts_failed_total\{",
    "publish lateness": r"histogram_quantile\(0\.99, sum by \(le\) "
                        r"\(rate\(switchboard_publish_lateness_seconds_bucket\{",
    "feed freshness": r"time\(\) - .*switchboard_feed_last_success_timestamp_seconds\{",
    "operational update overdue": r"switchboard_operational_update_overdue\{",
    "posts unknown": r"switchboard_posts_unknown\{",
    "posts held": r"switchboard_posts_held\{",
    "config reload status": r"switchboard_config_last_reload_successful\{",
}


def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def panels() -> list[dict[str, Any]]:
    """Every panel, including those inside collapsed rows."""
    out: list[dict[str, Any]] = []
    for panel in dashboard()["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def expressions() -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable."""
    for panel in panels():
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} target {target['refId']}", target["expr"]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            yield f"variable {variable['name']}", variable["definition"]


def as_promql(expr: str) -> str:
    """A Grafana expression with its variables filled in, as Prometheus would get it."""
    label_values = re.fullmatch(r"label_values\((.*), *[a-z_]+\)", expr)
    if label_values:
        return label_values.group(1)
    return expr.replace("$__rate_interval", "1m").replace("$instance", ".*")


def test_dashboard_has_the_fixed_uid_and_a_recent_schema() -> None:
    data = dashboard()
    assert data["uid"] == "switchboard"
    assert data["title"] == "switchboard"
    assert data["schemaVersion"] >= 39
    assert "id" not in data or data["id"] is None, "an exported id breaks imports elsewhere"


def test_dashboard_asks_for_a_prometheus_data_source() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["instance"]["datasource"] == DATASOURCE


def test_every_query_goes_to_the_chosen_data_source() -> None:
    for panel in panels():
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} queries nothing"
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]


@pytest.mark.parametrize("what", sorted(REQUIRED))
def test_dashboard_shows(what: str) -> None:
    pattern = re.compile(REQUIRED[what])
    assert any(pattern.search(expr) for _, expr in expressions()), what


def test_dashboard_uses_only_metrics_the_daemon_exports() -> None:
    names = exported()
    unknown = {where: used_in(expr) - names for where, expr in expressions()
               if used_in(expr) - names}
    assert unknown == {}


def test_every_query_selects_the_switchboard_job() -> None:
    for where, expr in expressions():
        for metric, matchers in re.findall(r"\b(switchboard_[a-z_]+|up)\b(\{[^}]*\})?", expr):
            assert 'job="switchboard"' in matchers, f"{metric} in {where}"


def test_panels_have_unique_ids_and_titles() -> None:
    ids = [p["id"] for p in panels()]
    assert len(ids) == len(set(ids))
    titles = [p["title"] for p in panels()]
    assert len(titles) == len(set(titles))


def test_panels_fit_the_grid_without_overlapping() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in panels():
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["h"] > 0
        assert pos["x"] + pos["w"] <= GRID_COLUMNS, panel["title"]
        cells = {(pos["x"] + dx, pos["y"] + dy)
                 for dx in range(pos["w"]) for dy in range(pos["h"])}
        assert not cells & taken, f"panel {panel['title']!r} overlaps another"
        taken |= cells


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each expression as a recording rule."""
    promtool = require_tool("promtool")
    rules = [{"record": f"dashboard:query_{i}", "expr": as_promql(expr)}
             for i, (_, expr) in enumerate(expressions())]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}),
                    encoding="utf-8")
    result = run_tool(promtool, "check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_provisioning_points_grafana_at_a_folder_of_files() -> None:
    data = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "switchboard.yaml")
                          .read_text(encoding="utf-8"))
    assert data["apiVersion"] == 1
    (provider,) = data["providers"]
    assert provider["type"] == "file"
    assert Path(provider["options"]["path"]).is_absolute()


def test_example_data_source_is_a_prometheus() -> None:
    data = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.example.yaml")
                          .read_text(encoding="utf-8"))
    assert data["apiVersion"] == 1
    assert [d["type"] for d in data["datasources"]] == ["prometheus"]
