"""docs/operations.md agrees with the files it documents: its example
configurations pass the real checkers, its links land on its own headings,
and the credentials it names are the ones the unit passes in."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from switchboard import config
from tests.operations.required_tools import require_tool, run_tool

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "operations.md"
UNIT = REPO / "systemd" / "switchboard.service"
RULES = REPO / "config" / "prometheus" / "switchboard-rules.yml"
CREDENTIALS_DIR = "/run/credentials/switchboard.service/"


def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def example(name: str) -> str:
    """The fenced block right after `<!-- example: NAME -->`."""
    found = re.search(rf"<!-- example: {re.escape(name)} -->\n```[a-z]*\n(.*?)\n```", doc(),
                      re.DOTALL)
    assert found, f"no example {name} in {DOC.name}"
    return found.group(1) + "\n"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors() -> set[str]:
    return {slug(m) for m in re.findall(r"^#{1,6} (.+)$", doc(), re.MULTILINE)}


def unit_credentials() -> set[str]:
    return {line.split("=", 1)[1].partition(":")[0]
            for line in UNIT.read_text(encoding="utf-8").splitlines()
            if line.startswith("LoadCredential=")}


def test_every_alert_runbook_url_lands_on_a_heading() -> None:
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    for group in rules["groups"]:
        for rule in group["rules"]:
            fragment = rule["annotations"]["runbook_url"].partition("#")[2]
            assert fragment in anchors(), f"{rule['alert']}: no heading for #{fragment}"


def test_every_link_within_the_page_lands_on_a_heading() -> None:
    links = set(re.findall(r"\]\(#([^)]+)\)", doc()))
    assert links
    assert links - anchors() == set()


def test_every_credential_the_page_names_is_passed_in_by_the_unit() -> None:
    named = set(re.findall(re.escape(CREDENTIALS_DIR) + r"([A-Za-z0-9_.\-]+[A-Za-z0-9])", doc()))
    assert named
    assert named - unit_credentials() == set()


def test_example_configuration_loads(tmp_path: Path) -> None:
    """With each credential the unit passes in present, the loader accepts the example."""
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    for name in unit_credentials():
        (credentials / name).write_text(f"test-{name}\n", encoding="utf-8")
    path = tmp_path / "switchboard.yaml"
    path.write_text(example("switchboard.yaml").replace(CREDENTIALS_DIR, f"{credentials}/"),
                    encoding="utf-8")
    shipped_runbooks = {p.stem for p in (REPO / "runbooks").glob("*.yaml")}

    loaded = config.load(path, env={}, runbook_names=shipped_runbooks)

    assert loaded.state_dir == Path("/var/lib/switchboard")
    assert loaded.runbooks_dir == tmp_path / "runbooks"
    assert (loaded.listen_host, loaded.listen_port) == ("127.0.0.1", 8650)
    assert {f.kind for f in loaded.feeds} == {"alertmanager", "pagerduty"}


def test_example_alertmanager_configuration_passes_amtool(tmp_path: Path) -> None:
    amtool = require_tool("amtool")
    text = example("alertmanager.yml")
    assert "url: http://127.0.0.1:8650/feeds/alertmanager" in text
    assert "send_resolved: true" in text
    path = tmp_path / "alertmanager.yml"
    path.write_text(text, encoding="utf-8")
    result = run_tool(amtool, "check-config", path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_example_alertmanager_route_keeps_switchboard_alerts_out_of_its_feed() -> None:
    routes = yaml.safe_load(example("alertmanager.yml"))["route"]["routes"]
    first = routes[0]
    assert first["matchers"] == ['service="switchboard"']
    assert first["receiver"] != "switchboard"
    assert not first.get("continue", False)


def test_example_prometheus_configuration_passes_promtool(tmp_path: Path) -> None:
    """The example's files are recreated under tmp_path: the real rules file and a token."""
    promtool = require_tool("promtool")
    text = example("prometheus.yml")
    assert "job_name: switchboard" in text
    for absolute in sorted(set(re.findall(r"/etc/prometheus/[\w./-]+", text))):
        local = tmp_path / Path(absolute).name
        if local.name == RULES.name:
            shutil.copy(RULES, local)
        else:
            local.write_text("test-token\n", encoding="utf-8")
        text = text.replace(absolute, str(local))
    path = tmp_path / "prometheus.yml"
    path.write_text(text, encoding="utf-8")
    result = run_tool(promtool, "check", "config", path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("heading", "anchor"), [
    ("SwitchboardDown", "switchboarddown"),
    ("Install under systemd", "install-under-systemd"),
    ("Backup and restore", "backup-and-restore"),
])
def test_slug_matches_github(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor
