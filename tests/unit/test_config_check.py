"""`switchboard check`: each problem is reported as FILE:LINE:COL naming the item."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from switchboard import config
from switchboard.yamldoc import InvalidFile

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
listen: 127.0.0.1:8650
state_dir: ./var
timezone: Europe/London
runbooks_dir: runbooks
max_lateness: 10m
access:
  - {name: ops-desk, role: ops, token_env: SB_CHECK_TOKEN}
channels:
  - {id: outbox, kind: outbox, path: ./var/outbox.jsonl}
  - {id: ops-chat, kind: console, audience: internal}
feeds:
  - id: alertmanager
    kind: alertmanager
    token_env: SB_CHECK_TOKEN
    rules:
      - match: {severity: critical}
        runbook: rail-disruption
        channels: [outbox]
"""


def check(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    config_dir = tmp_path / "config"
    config_dir.mkdir(exist_ok=True)
    if not (tmp_path / "runbooks").exists():
        shutil.copytree(ROOT / "runbooks", tmp_path / "runbooks")
    path = config_dir / "switchboard.yaml"
    path.write_text(text)
    result = subprocess.run([sys.executable, "-m", "switchboard", "check", "-c", str(path)],
                            capture_output=True, text=True, cwd=tmp_path, timeout=60,
                            env={"PATH": "/usr/bin:/bin", **(env or {})})
    return result.returncode, result.stdout.replace(str(path), "CONFIG")


def test_the_shipped_config_is_clean() -> None:
    result = subprocess.run([sys.executable, "-m", "switchboard", "check"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok" in result.stdout


def test_a_clean_config_passes(tmp_path: Path) -> None:
    code, out = check(tmp_path, GOOD, {"SB_CHECK_TOKEN": "t"})
    assert code == 0, out
    assert "CONFIG: ok (2 channels, 1 feeds, 4 runbooks" in out


def test_a_misspelt_key_is_named_with_its_position(tmp_path: Path) -> None:
    code, out = check(tmp_path, GOOD.replace("max_lateness", "max_latenes"),
                      {"SB_CHECK_TOKEN": "t"})
    assert code == 1
    assert "CONFIG:5:1: max_latenes: unknown key (allowed:" in out


def test_a_misspelt_key_inside_a_list_item(tmp_path: Path) -> None:
    code, out = check(tmp_path, GOOD.replace("audience: internal", "audiense: internal"),
                      {"SB_CHECK_TOKEN": "t"})
    assert code == 1
    assert "CONFIG:10:35: channels[1].audiense: unknown key" in out


def test_a_dangling_channel_reference(tmp_path: Path) -> None:
    code, out = check(tmp_path, GOOD.replace("channels: [outbox]", "channels: [outbx]"),
                      {"SB_CHECK_TOKEN": "t"})
    assert code == 1
    assert ("CONFIG:18:20: feeds[0].rules[0].channels[0]: no channel named 'outbx' "
            "(channels: ops-chat, outbox)") in out


def test_a_dangling_runbook_reference(tmp_path: Path) -> None:
    code, out = check(tmp_path, GOOD.replace("runbook: rail-disruption",
                                             "runbook: rail-disruptoin"),
                      {"SB_CHECK_TOKEN": "t"})
    assert code == 1
    assert ("CONFIG:17:9: feeds[0].rules[0].runbook: no runbook named 'rail-disruptoin' "
            "(runbooks: rail-disruption, security-incident, service-outage, severe-weather)"
            ) in out


def test_a_bad_duration(tmp_path: Path) -> None:
    code, out = check(tmp_path, GOOD.replace("max_lateness: 10m", "max_lateness: 10 minutes"),
                      {"SB_CHECK_TOKEN": "t"})
    assert code == 1
    assert "CONFIG:5:1: max_lateness: bad duration '10 minutes'" in out


def test_a_missing_env_secret_is_named(tmp_path: Path) -> None:
    code, out = check(tmp_path, GOOD)
    assert code == 1
    assert "CONFIG:7:33: access[0].token_env: environment variable SB_CHECK_TOKEN is not set" \
        in out


def test_a_missing_secret_file_is_named(tmp_path: Path) -> None:
    code, out = check(tmp_path, GOOD.replace("token_env: SB_CHECK_TOKEN}",
                                             "token_file: /nonexistent/ops.token}"),
                      {"SB_CHECK_TOKEN": "t"})
    assert code == 1
    assert "access[0].token_file: cannot read secret file /nonexistent/ops.token" in out


def test_a_secret_written_in_the_file_is_refused(tmp_path: Path) -> None:
    code, out = check(tmp_path, GOOD.replace("token_env: SB_CHECK_TOKEN}", "token: hunter2}"),
                      {"SB_CHECK_TOKEN": "t"})
    assert code == 1
    assert "access[0].token: secrets are not written in the file" in out
    assert "hunter2" not in out


def test_a_wrong_type(tmp_path: Path) -> None:
    code, out = check(tmp_path, GOOD.replace("kind: outbox, path: ./var/outbox.jsonl",
                                             "kind: outbox, path: ./o.jsonl, max_length: many"),
                      {"SB_CHECK_TOKEN": "t"})
    assert code == 1
    assert "channels[0].max_length: must be an integer, not a string" in out


def test_every_problem_is_printed_not_just_the_first(tmp_path: Path) -> None:
    broken = (GOOD.replace("max_lateness: 10m", "max_lateness: x")
              .replace("timezone: Europe/London", "timezone: Nowhere/Land")
              .replace("kind: console", "kind: telegraph"))
    code, out = check(tmp_path, broken)
    assert code == 1
    assert "max_lateness: bad duration" in out
    assert "timezone: unknown timezone 'Nowhere/Land'" in out
    assert "channels[1].kind: unknown channel kind 'telegraph'" in out
    assert "SB_CHECK_TOKEN is not set" in out


def test_invalid_yaml_is_reported_with_its_position(tmp_path: Path) -> None:
    code, out = check(tmp_path, GOOD.replace("channels:\n", "channels: [\n", 1))
    assert code == 1
    assert out.startswith("CONFIG:")
    assert "invalid YAML" in out


def test_a_broken_runbook_is_reported_by_check(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "runbooks", tmp_path / "runbooks")
    book = tmp_path / "runbooks" / "rail-disruption.yaml"
    book.write_text(book.read_text().replace("action: remind", "action: remindd"))
    code, out = check(tmp_path, GOOD, {"SB_CHECK_TOKEN": "t"})
    assert code == 1
    assert "rail-disruption.yaml:" in out
    assert "remindd" in out


def test_a_json_feed_mapping_without_a_key_path_is_named(tmp_path: Path) -> None:
    text = GOOD + """\
  - id: hook
    kind: json
    token_env: SB_CHECK_TOKEN
    fields: {status: state}
"""
    code, out = check(tmp_path, text, {"SB_CHECK_TOKEN": "t"})
    assert code == 1
    assert "CONFIG:22:5: feeds[1].fields: missing required key 'key'" in out


def test_a_push_feed_without_credentials_never_runs_open(tmp_path: Path) -> None:
    code, out = check(tmp_path, GOOD.replace("    token_env: SB_CHECK_TOKEN\n", ""),
                      {"SB_CHECK_TOKEN": "t"})
    assert code == 1
    assert "feeds[0]: alertmanager feeds need token_env, token_file or token_sha256" in out


def test_a_repeated_channel_or_feed_id_is_named(tmp_path: Path) -> None:
    text = GOOD.replace("  - {id: ops-chat, kind: console, audience: internal}\n",
                        "  - {id: ops-chat, kind: console, audience: internal}\n"
                        "  - {id: outbox, kind: console}\n") + """\
  - id: alertmanager
    kind: alertmanager
    token_env: SB_CHECK_TOKEN
"""
    code, out = check(tmp_path, text, {"SB_CHECK_TOKEN": "t"})
    assert code == 1
    assert "CONFIG:11:6: channels[2].id: duplicate channel id 'outbox'" in out
    assert "feeds[1].id: duplicate feed id 'alertmanager'" in out


# -- config that cannot silently fail (design §7.1) ----------------------------------

ENV = {"SB_CHECK_TOKEN": "t", "SB_CHECK_OTHER": "t"}


@pytest.mark.parametrize("value", ["0s", "0.5s"])
def test_a_max_lateness_under_a_second_is_refused(tmp_path: Path, value: str) -> None:
    code, out = check(tmp_path, GOOD.replace("max_lateness: 10m", f"max_lateness: {value}"),
                      ENV)
    assert code == 1
    assert ("CONFIG:5:1: max_lateness: must be at least 1s: a post later than this is "
            "recorded missed instead of sent, so every post would be missed") in out


def test_a_max_lateness_of_one_second_is_accepted(tmp_path: Path) -> None:
    code, out = check(tmp_path, GOOD.replace("max_lateness: 10m", "max_lateness: 1s"), ENV)
    assert code == 0, out


def test_the_same_token_in_two_access_entries_is_refused_naming_both(tmp_path: Path) -> None:
    # Different variables, same value: the digest decides, not the reference.
    text = GOOD.replace("  - {name: ops-desk, role: ops, token_env: SB_CHECK_TOKEN}\n",
                        "  - {name: ops-desk, role: ops, token_env: SB_CHECK_TOKEN}\n"
                        "  - {name: wallboard, role: viewer, token_env: SB_CHECK_OTHER}\n")
    code, out = check(tmp_path, text, ENV)
    assert code == 1
    assert ("CONFIG:8:5: access[1]: entry 'wallboard' has the same token as access[0] "
            "'ops-desk': each token belongs to one entry and one role") in out


def test_a_token_digest_equal_to_another_entrys_token_is_refused(tmp_path: Path) -> None:
    digest = hashlib.sha256(b"t").hexdigest()
    text = GOOD.replace("  - {name: ops-desk, role: ops, token_env: SB_CHECK_TOKEN}\n",
                        f"  - {{name: admin, role: admin, token_sha256: {digest.upper()}}}\n"
                        "  - {name: ops-desk, role: ops, token_env: SB_CHECK_TOKEN}\n")
    code, out = check(tmp_path, text, ENV)
    assert code == 1
    assert "CONFIG:8:5: access[1]: entry 'ops-desk' has the same token as access[0] 'admin'" \
        in out


def test_the_daemon_refuses_to_load_the_same_token_twice(tmp_path: Path) -> None:
    # `run` and a reload load through the same function as `check`.
    text = GOOD.replace("  - {name: ops-desk, role: ops, token_env: SB_CHECK_TOKEN}\n",
                        "  - {name: ops-desk, role: ops, token_env: SB_CHECK_TOKEN}\n"
                        "  - {name: wallboard, role: viewer, token_env: SB_CHECK_TOKEN}\n")
    path = tmp_path / "switchboard.yaml"
    path.write_text(text)
    with pytest.raises(InvalidFile) as caught:
        config.load(path, env=ENV)
    assert [p.message for p in caught.value.problems] == [
        "entry 'wallboard' has the same token as access[0] 'ops-desk': each token belongs to "
        "one entry and one role"]


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.org/feed",
                                 "example.org/feed.atom", "http:///feed.atom"])
def test_a_feed_url_that_is_not_http_is_refused(tmp_path: Path, url: str) -> None:
    code, out = check(tmp_path, GOOD + f"  - {{id: weather, kind: atom, url: '{url}'}}\n", ENV)
    assert code == 1
    assert (f"CONFIG:19:31: feeds[1].url: must be an http:// or https:// URL with a host, "
            f"not {url!r}") in out


def test_an_unknown_rule_severity_is_refused_naming_the_valid_ones(tmp_path: Path) -> None:
    code, out = check(tmp_path, GOOD.replace("channels: [outbox]",
                                             "channels: [outbox]\n        severity: sev1"), ENV)
    assert code == 1
    assert ("CONFIG:19:9: feeds[0].rules[0].severity: must be one of minor, major, critical, "
            "not 'sev1'") in out


def test_a_channel_listed_twice_in_a_rule_is_held_once(tmp_path: Path) -> None:
    text = GOOD.replace("channels: [outbox]", "channels: [outbox, ops-chat, outbox]")
    path = tmp_path / "switchboard.yaml"
    path.write_text(text)
    loaded = config.load(path, env=ENV)
    assert loaded.feeds[0].rules[0].channels == ("outbox", "ops-chat")


def test_a_lone_surrogate_in_the_config_is_refused_with_its_position(tmp_path: Path) -> None:
    code, out = check(tmp_path, GOOD.replace("runbook: rail-disruption",
                                             'runbook: rail-disruption\n'
                                             '        title: "Signal failure \\udc80"'), ENV)
    assert code == 1
    assert ("CONFIG:18:16: feeds[0].rules[0].title: is not valid Unicode text: it holds a "
            "lone surrogate (\\udc80 at character 16)") in out


def test_a_config_that_is_not_utf8_is_refused_with_its_line(tmp_path: Path) -> None:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    shutil.copytree(ROOT / "runbooks", tmp_path / "runbooks")
    (config_dir / "switchboard.yaml").write_bytes(GOOD.replace("Europe/London", "Europe/\x00")
                                                  .encode().replace(b"\x00", b"\xe9"))
    result = subprocess.run([sys.executable, "-m", "switchboard", "check", "-c",
                             str(config_dir / "switchboard.yaml")], capture_output=True,
                            text=True, cwd=tmp_path, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 1
    assert "switchboard.yaml:3:1: not UTF-8 text (byte 0xe9)" in result.stdout


def test_the_cli_offers_exactly_the_severities_the_daemon_takes() -> None:
    from switchboard.cli import incidents
    assert incidents.SEVERITIES == config.SEVERITIES


def test_check_and_simulate_write_no_token_file_the_daemon_would_generate(
        tmp_path: Path) -> None:
    """`check` is offline and read-only: the embedded default's `generate: true`
    tokens are created by the daemon's first start, never by checking it."""
    shutil.copytree(ROOT / "config", tmp_path / "config")
    shutil.copytree(ROOT / "runbooks", tmp_path / "runbooks")
    path = tmp_path / "config" / "switchboard.yaml"
    for command in (["check", "-c", str(path)],
                    ["simulate", "rail-disruption", "-c", str(path), "--for", "1h"]):
        result = subprocess.run([sys.executable, "-m", "switchboard", *command],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
    assert not (tmp_path / "var").exists()
    # Loading it for the daemon does create them.
    config.load(path, env={})
    assert sorted(p.name for p in (tmp_path / "var" / "tokens").iterdir())
