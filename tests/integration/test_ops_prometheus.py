"""A real Prometheus scrapes the real daemon with the shipped alert rules loaded.

Proves what promtool alone cannot: the scrape config in docs/operations.md
works against the live `/metrics` (job `switchboard`, `up` is 1), an incident
declared through the API shows in `switchboard_incidents_active`, every
shipped rule loads and evaluates without error on real series, and
SwitchboardFeedStale watches a push feed that has heard nothing since start.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.conftest import require_tool
from tests.daemon import ROOT, TOKENS, DaemonProcess, base_config, free_port, terminate

RULES = ROOT / "config" / "prometheus" / "switchboard-rules.yml"
DASHBOARD = ROOT / "config" / "grafana" / "switchboard.json"
PUSH_FEED = {"id": "alertmanager", "kind": "alertmanager", "token_env": "SB_TEST_FEED",
             "rules": [{"match": {"severity": "critical"}, "runbook": "rail-disruption"}]}


class Prometheus:
    """The `prometheus` binary on a free loopback port, its data in tmp."""

    def __init__(self, binary: str, tmp: Path, targets: list[str]) -> None:
        self.binary, self.tmp = binary, tmp
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = tmp / "prometheus.yml"
        self.log_path = tmp / "prometheus.log"
        self.config_path.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [{"job_name": "switchboard",
                                "static_configs": [{"targets": targets}]}],
        }, sort_keys=False))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [self.binary, f"--config.file={self.config_path}",
                 f"--storage.tsdb.path={self.tmp / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp)
        self.wait(lambda: self._ready(), timeout, "Prometheus ready")

    def _ready(self) -> bool:
        try:
            return requests.get(self.url + "/-/ready", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        terminate(self.proc)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def api(self, path: str, **params: str) -> Any:
        response = requests.get(self.url + path, params=params, timeout=10)
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[float]:
        """The values of an instant vector query (empty when nothing matches)."""
        return [value for _, value in self.series(expr)]

    def series(self, expr: str) -> list[tuple[dict[str, str], float]]:
        """Labels and value of each element of an instant vector query."""
        data = self.api("/api/v1/query", query=expr)
        assert data["resultType"] == "vector", data
        return [(item["metric"], float(item["value"][1])) for item in data["result"]]

    def wait(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited with {self.proc.returncode}:\n"
                                     f"{self.log()}")
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout}s\n{self.log()[-3000:]}")
            time.sleep(0.25)


@pytest.fixture
def scraped(tmp_path: Path) -> Iterator[tuple[DaemonProcess, Prometheus]]:
    binary = require_tool("prometheus")
    daemon = DaemonProcess(tmp_path, config=base_config(tmp_path, free_port(),
                                                        feeds=[PUSH_FEED]))
    prometheus = Prometheus(binary, tmp_path, [f"127.0.0.1:{daemon.port}"])
    try:
        daemon.start()
        prometheus.start()
        yield daemon, prometheus
    finally:
        prometheus.stop()
        daemon.kill()


def test_prometheus_scrapes_the_daemon_and_sees_a_declared_incident(
        scraped: tuple[DaemonProcess, Prometheus]) -> None:
    daemon, prometheus = scraped
    # A first sample of 0 shows the later 1 is the declaration, not a stale value.
    prometheus.wait(lambda: prometheus.query("switchboard_incidents_active") == [0.0], 30,
                    "switchboard_incidents_active == 0 before the declaration")
    assert prometheus.query('up{job="switchboard"}') == [1.0]
    assert prometheus.query('switchboard_ready{job="switchboard"}') == [1.0]

    daemon.ok("POST", "/api/v1/incidents",
              {"runbook": "rail-disruption", "title": "Signal failure"}, role="ops")

    prometheus.wait(lambda: prometheus.query("switchboard_incidents_active") == [1.0], 30,
                    "switchboard_incidents_active == 1 after the declaration")
    assert prometheus.query('switchboard_channel_under_incident{channel="outbox"}') == [1.0]
    assert prometheus.query('up{job="switchboard"}') == [1.0]


def test_the_shipped_rules_load_and_evaluate_cleanly_on_real_series(
        scraped: tuple[DaemonProcess, Prometheus]) -> None:
    _, prometheus = scraped
    shipped = {rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"]
               for rule in group["rules"]}
    prometheus.wait(lambda: prometheus.query('up{job="switchboard"}') == [1.0], 30,
                    "a first scrape")
    seen: dict[str, tuple[str, str, str | None]] = {}

    def settled() -> bool:
        # An evaluation before the first scrape leaves SwitchboardDown pending
        # (absent(up) was true) until the next one: wait for that to pass.
        seen.clear()
        for group in prometheus.api("/api/v1/rules")["groups"]:
            for rule in group["rules"]:
                seen[rule["name"]] = (rule["health"], rule["state"], rule.get("lastError"))
        return bool(seen) and all(s[:2] == ("ok", "inactive") for s in seen.values())

    try:
        prometheus.wait(settled, 15, "every rule healthy and inactive")
    except AssertionError:
        unhealthy = {name: s for name, s in seen.items() if s[:2] != ("ok", "inactive")}
        raise AssertionError(f"rules not ok and inactive: {unhealthy}") from None
    assert set(seen) == shipped


def freshness_panel() -> str:
    """The dashboard's feed freshness query, for every instance."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    [panel] = [p for p in panels if p.get("title", "").startswith("Feed freshness")]
    return str(panel["targets"][0]["expr"]).replace("$instance", ".*")


def heartbeat() -> dict[str, Any]:
    """Alertmanager's webhook body for an always-firing Watchdog (no feed rule matches)."""
    alert = {"status": "firing", "labels": {"alertname": "Watchdog", "severity": "none"},
             "annotations": {}, "startsAt": "2026-01-01T00:00:00Z",
             "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "0123456789abcdef"}
    return {"version": "4", "status": "firing", "receiver": "switchboard", "alerts": [alert],
            "groupLabels": {"alertname": "Watchdog"}, "commonLabels": alert["labels"],
            "commonAnnotations": {}, "externalURL": "http://127.0.0.1:9093",
            "groupKey": '{}:{alertname="Watchdog"}', "truncatedAlerts": 0}


def test_feed_staleness_counts_from_the_start_until_a_first_delivery(
        scraped: tuple[DaemonProcess, Prometheus]) -> None:
    daemon, prometheus = scraped
    [rule] = [r for group in yaml.safe_load(RULES.read_text())["groups"]
              for r in group["rules"] if r["alert"] == "SwitchboardFeedStale"]
    seconds_without_success, threshold = rule["expr"].rsplit(">", 1)
    assert threshold.strip() == "900"
    since_start = ('time() - max by (job, instance, feed) '
                   '(switchboard_feed_signals_created{job="switchboard"})')

    # Nothing delivered yet: no last-success series at all, yet the rule sees the feed.
    [(labels, age)] = prometheus.wait(lambda: prometheus.series(seconds_without_success), 30,
                                      "the feed in SwitchboardFeedStale's expression")
    assert prometheus.query("switchboard_feed_last_success_timestamp_seconds") == []
    assert labels == {"job": "switchboard", "instance": f"127.0.0.1:{daemon.port}",
                      "feed": "alertmanager"}
    assert 0 <= age < 60
    assert [labels["feed"] for labels, _ in prometheus.series(freshness_panel())] == \
        ["alertmanager"]

    time.sleep(2)  # so the delivery is measurably later than the start
    response = daemon.api("POST", "/feeds/alertmanager", heartbeat(), token=TOKENS["feed"])
    assert response.status_code == 202, response.text
    prometheus.wait(lambda: prometheus.query(
        'switchboard_feed_last_success_timestamp_seconds{job="switchboard"}'), 30,
        "the first delivery scraped")

    # One element per feed, now measured from the delivery, not from the start.
    [(labels, age)] = prometheus.series(seconds_without_success)
    [started] = prometheus.query(since_start)
    assert labels["feed"] == "alertmanager"
    assert age < started - 1.5, (age, started)
