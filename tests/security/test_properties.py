"""Security properties beyond who-may-do-what (see test_matrix.py for that).

- tokens and signatures are compared in constant time, by construction;
- runbook templates cannot reach Python internals, at `check` time or at render;
- nothing listens beyond loopback unless configured;
- no secret reaches the log, an API answer or a CLI message.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import hmac
import re
import shutil
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
import yaml

from switchboard import auth, config
from switchboard.config import AccessToken
from switchboard.feeds import auth as feed_auth
from switchboard.feeds.signal import FeedError
from switchboard.runbooks import ChannelInfo, check_runbooks
from switchboard.templates import Context, IncidentView, SignalView, TemplateFailure, Templates
from tests.daemon import ROOT, TOKENS, DaemonProcess, base_config
from tests.fakes.fake_mastodon import FakeMastodon
from tests.fakes.server import Answer, FakeServer, Request
from tests.security import matrix

SOURCE = ROOT / "switchboard"

# -- constant-time comparison --------------------------------------------------------

# Names that hold credentials or values derived from them.
_SECRETISH = re.compile(r"token|digest|signature|secret|sha256|hmac|expected|candidate|given",
                        re.I)


def _names(node: ast.AST) -> set[str]:
    found = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            found.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            found.add(sub.attr)
        elif isinstance(sub, ast.arg):
            found.add(sub.arg)
    return found


def _plain_comparisons(path: Path) -> list[str]:
    """`==`, `!=`, `in` between a credential and anything but a constant or None."""
    tree = ast.parse(path.read_text(), str(path))
    name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        if not any(isinstance(op, ast.Eq | ast.NotEq | ast.In | ast.NotIn) for op in node.ops):
            continue
        operands = [node.left, *node.comparators]
        if any(isinstance(o, ast.Constant) for o in operands):
            continue  # `scheme.lower() != "bearer"`, `x == ""`: not a secret compared
        if any(_SECRETISH.search(name) for o in operands for name in _names(o)):
            out.append(f"{name}:{node.lineno}: {ast.unparse(node)}")
    return out


def _calls(path: Path, module: str, function: str) -> int:
    tree = ast.parse(path.read_text(), str(path))
    return sum(1 for node in ast.walk(tree)
               if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
               and node.func.attr == function and isinstance(node.func.value, ast.Name)
               and node.func.value.id == module)


@pytest.mark.parametrize("relative", ["switchboard/auth.py", "switchboard/feeds/auth.py"])
def test_credential_checks_compare_with_hmac_compare_digest(relative: str) -> None:
    assert _calls(ROOT / relative, "hmac", "compare_digest") >= 1


# Comparisons the scan flags that hold no credential, each with the reason.
NOT_CREDENTIALS = {
    "self.digests.get(key) != digests[key]": "poll snapshots: content hashes of feed items",
}


def test_no_module_compares_credentials_with_plain_equality() -> None:
    found = [c for path in sorted(SOURCE.rglob("*.py")) for c in _plain_comparisons(path)
             if c.split(": ", 1)[1] not in NOT_CREDENTIALS]
    assert found == []


def test_the_ast_check_would_see_a_plain_comparison(tmp_path: Path) -> None:
    # The scanner itself: a leaky comparison is found, the safe ones are not.
    probe = tmp_path / "probe.py"
    probe.write_text("def f(token, digest, scheme):\n"
                     "    if scheme != 'bearer' or token is None: return 0\n"
                     "    return digest == hashlib.sha256(token.encode()).hexdigest()\n")
    assert _plain_comparisons(probe) == [
        "probe.py:3: digest == hashlib.sha256(token.encode()).hexdigest()"]


class _Spy:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, Any]] = []
        self._real = hmac.compare_digest

    def __call__(self, a: Any, b: Any) -> bool:
        self.calls.append((a, b))
        return self._real(a, b)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> _Spy:
    probe = _Spy()
    monkeypatch.setattr(hmac, "compare_digest", probe)
    return probe


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def test_api_tokens_are_checked_against_every_entry_whoever_matches(spy: _Spy) -> None:
    tokens = auth.Tokens([AccessToken(role, role, _digest(TOKENS[role]))
                          for role in ("viewer", "marketing", "ops", "admin")])
    for header, role in [(f"Bearer {TOKENS['viewer']}", "viewer"),
                         (f"Bearer {TOKENS['admin']}", "admin"),
                         ("Bearer nobody", None)]:
        spy.calls.clear()
        caller = asyncio.run(tokens.identify(header))
        assert (caller.role if caller else None) == role
        # No early exit: the first and the last entry cost the same.
        assert len(spy.calls) == 4
        assert all(isinstance(a, str) and len(a) == 64 for a, _ in spy.calls)


def test_metrics_and_feed_tokens_go_through_compare_digest(spy: _Spy) -> None:
    assert auth.digest_matches("scrape", _digest("scrape"))
    assert not auth.digest_matches("scrapf", _digest("scrape"))
    feed_auth.check_bearer("am", {"Authorization": "Bearer t0k"}, _digest("t0k"))
    with pytest.raises(FeedError):
        feed_auth.check_bearer("am", {"Authorization": "Bearer t0j"}, _digest("t0k"))
    assert len(spy.calls) == 4


def test_every_signature_candidate_is_compared_even_after_a_match(spy: _Spy) -> None:
    body = b'{"event": {}}'
    right = feed_auth.hmac_sha256_hex("s3cret", body)
    assert feed_auth.signature_matches("s3cret", body, [right, "00" * 32, "ff" * 32])
    assert len(spy.calls) == 3
    spy.calls.clear()
    assert not feed_auth.signature_matches("s3cret", body, ["00" * 32, right[:-1] + "0"])
    assert len(spy.calls) == 2


# -- the template sandbox ---------------------------------------------------------------

ESCAPES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__.os }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ incident.__class__ }}",
    "{{ incident.__dict__ }}",
    "{{ signal.__class__.__init__.__globals__ }}",
    "{{ signal.get.__func__.__globals__ }}",
    "{{ now.__class__.__mro__ }}",
    "{{ duration.__globals__ }}",
    "{{ duration('1m').__class__ }}",
    "{{ incident.title|attr('__class__') }}",
    "{{ incident|attr('\\x5f\\x5fclass\\x5f\\x5f') }}",
    "{{ '{0.__class__}'.format(incident) }}",
    "{{ '{x.__class__}'.format_map({'x': incident}) }}",
    "{{ '%s'|format(incident.__class__) }}",
    "{% for c in ().__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{% set f = incident.declared_at.__reduce_ex__ %}{{ f(2) }}",
    "{{ signal.labels.update({'injected': 'yes'}) }}",
    "{{ incident.channels.__len__() }}",
]
SAMPLE = Context(IncidentView("INC-7", "Sandbox", "major", "drill",
                              datetime(2024, 1, 15, 9, 0, tzinfo=UTC), ("outbox",)),
                 now=datetime(2024, 1, 15, 9, 5, tzinfo=UTC))


@pytest.mark.parametrize("source", ESCAPES)
def test_templates_cannot_reach_python_internals_at_render(source: str) -> None:
    with pytest.raises(TemplateFailure) as failure:
        Templates().render(source, SAMPLE)
    assert failure.value.message.startswith("not allowed in a template: ")


def test_an_escape_in_a_branch_the_sample_does_not_take_is_still_refused_at_render() -> None:
    # `check` test-renders against a sample incident, so it cannot see a branch the sample
    # never takes; the sandbox still refuses it when an incident takes it.
    source = "{% if incident.severity == 'critical' %}{{ ''.__class__.__mro__ }}{% endif %}ok"
    template = Templates().compile(source)
    assert template.render(SAMPLE) == "ok"
    critical = Context(IncidentView("INC-8", "x", "critical", "drill", SAMPLE.now), SAMPLE.now)
    with pytest.raises(TemplateFailure, match="not allowed in a template"):
        template.render(critical)


def test_feed_text_is_data_never_a_template() -> None:
    hostile = "{{ ''.__class__.__mro__ }}{% raw %}{{ 7*7 }}"
    context = Context(IncidentView("INC-9", hostile, "major", "drill", SAMPLE.now), SAMPLE.now,
                      signal=SignalView(source="am", key="k", title=hostile,
                                        labels={"service": hostile}))
    text = Templates().render("{{ incident.title }}|{{ signal.title }}|"
                              "{{ signal.get('service') }}", context)
    assert text == "|".join([hostile] * 3)


def _escape_runbook(name: str, template: str, where: str = "step") -> str:
    body = textwrap.indent(template, " " * 6)
    if where == "handover":
        return (f"name: {name}\ntitle: Escape\nscope: [outbox]\n"
                f"handover:\n  notify: [ops-chat]\n  template: |\n{body[2:]}\n")
    return (f"name: {name}\ntitle: Escape\nscope: [outbox]\nhandover:\n  notify: [ops-chat]\n"
            f"steps:\n  - name: holding\n    at: 0m\n    action: post\n    template: |\n"
            f"{body}\n")


CHANNELS = {"outbox": ChannelInfo("outbox", "public", 280),
            "ops-chat": ChannelInfo("ops-chat", "internal", 4000)}


@pytest.mark.parametrize("index", range(len(ESCAPES)))
def test_check_refuses_an_escape_in_a_runbook_with_its_position(tmp_path: Path,
                                                                 index: int) -> None:
    (tmp_path / "escape.yaml").write_text(_escape_runbook("escape", ESCAPES[index]))
    problems = check_runbooks(tmp_path, CHANNELS)
    assert [str(p) for p in problems] == [
        f"{tmp_path / 'escape.yaml'}:11:7: steps[0].template: {problems[0].message}"]
    assert problems[0].message.startswith("not allowed in a template: ")


def test_check_refuses_an_escape_in_a_handover_template(tmp_path: Path) -> None:
    (tmp_path / "escape.yaml").write_text(_escape_runbook("escape", ESCAPES[0], "handover"))
    problems = check_runbooks(tmp_path, CHANNELS)
    assert len(problems) == 1 and problems[0].path == "handover.template"
    assert "not allowed in a template" in problems[0].message


def test_switchboard_check_prints_every_escape_as_file_line_col(tmp_path: Path) -> None:
    runbooks = tmp_path / "runbooks"
    runbooks.mkdir()
    for i, source in enumerate(ESCAPES):
        (runbooks / f"escape-{i}.yaml").write_text(_escape_runbook(f"escape-{i}", source))
    config_path = tmp_path / "switchboard.yaml"
    config_path.write_text(yaml.safe_dump({
        "state_dir": str(tmp_path / "state"), "runbooks_dir": str(runbooks),
        "channels": [{"id": "outbox", "kind": "outbox", "path": str(tmp_path / "o.jsonl")},
                     {"id": "ops-chat", "kind": "console", "audience": "internal"}]}))
    result = subprocess.run([sys.executable, "-m", "switchboard", "check", "-c",
                             str(config_path)], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    for i in range(len(ESCAPES)):
        line = f"{runbooks / f'escape-{i}.yaml'}:11:7: steps[0].template: not allowed in a " \
               f"template: access to attribute"
        assert line in output, (i, output)


# -- loopback only ---------------------------------------------------------------------


def test_the_embedded_default_listens_on_loopback(tmp_path: Path) -> None:
    # A copy: loading the default generates its token files beside it.
    (tmp_path / "config").mkdir()
    shutil.copy(ROOT / "config" / "switchboard.yaml", tmp_path / "config" / "switchboard.yaml")
    loaded = config.load(tmp_path / "config" / "switchboard.yaml", env={})
    assert (loaded.listen_host, loaded.listen_port) == ("127.0.0.1", 8650)
    generated = sorted((tmp_path / "var" / "tokens").iterdir())
    assert generated, "the default generates its tokens"
    for path in generated:  # ... readable by the daemon's user alone
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((tmp_path / "var" / "tokens").stat().st_mode) & 0o077 == 0


def test_a_config_without_listen_means_loopback(tmp_path: Path) -> None:
    path = tmp_path / "switchboard.yaml"
    path.write_text("channels: [{id: outbox, kind: outbox}]\n")
    loaded = config.load(path, env={})
    assert loaded.listen_host == "127.0.0.1"


def _listening(pid: int) -> list[tuple[str, int]]:
    sockets = psutil.Process(pid).net_connections(kind="inet")
    return sorted((c.laddr.ip, c.laddr.port) for c in sockets if c.status == psutil.CONN_LISTEN)


def test_the_running_daemon_listens_on_loopback_only(daemon: DaemonProcess) -> None:
    assert daemon.proc is not None
    assert _listening(daemon.proc.pid) == [("127.0.0.1", daemon.port)]
    # Cross-check with the kernel's table: the port is bound to 127.0.0.1, nowhere else.
    bound = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port = local.split(":")
            if state == "0A" and int(port, 16) == daemon.port:
                bound.add(address)
    assert bound == {"0100007F"}


# -- no secret in logs, answers or messages ---------------------------------------------

DENY_PATH = "/services/T0DENY/B0DENY/deny-path-secret-3b7f"
LOOP_PATH = "/services/T0LOOP/B0LOOP/loop-path-secret-91ad"
SCHEME_URL = "htps://127.0.0.1:9/services/T0TYPO/B0TYPO/typo-path-secret-c4e2"
MASTODON_TOKEN = "mastodon-access-token-secret-0f3a"
METRICS_TOKEN = "metrics-scrape-secret-77b1"


class HostileReceiver(FakeServer):
    """A webhook receiver that refuses (401) or sends the client round in circles (307)."""

    def route(self, request: Request) -> Answer:
        if request.path == DENY_PATH:
            return Answer(401, "invalid_token")
        if request.path == LOOP_PATH:
            return Answer(307, "", {"Location": LOOP_PATH})
        return Answer(404, "no_service")


TEMPLATE_RUNBOOK = """\
name: sec-title
title: Template injection drill
severity: minor
scope: [outbox]
handover:
  notify: [ops-chat]
steps:
  - name: holding
    at: 0m
    action: post
    template: "Known: {{ incident.title }}"
resolve:
  cooldown: 0m
"""


@pytest.fixture(scope="module")
def receivers() -> Iterator[tuple[HostileReceiver, FakeMastodon]]:
    with HostileReceiver() as hook, FakeMastodon(access_token="the-right-one") as mastodon:
        yield hook, mastodon


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory,
           receivers: tuple[HostileReceiver, FakeMastodon]) -> Iterator[DaemonProcess]:
    hook, mastodon = receivers
    tmp = tmp_path_factory.mktemp("secrets")
    webhook = {"kind": "webhook", "audience": "internal", "max_retries": 0, "timeout": 5}
    channels: list[dict[str, Any]] = [
        {"id": "outbox", "kind": "outbox", "path": str(tmp / "outbox.jsonl")},
        {"id": "ops-chat", "kind": "outbox", "audience": "internal",
         "path": str(tmp / "ops-chat.jsonl")},
        {"id": "hook-deny", **webhook, "url_env": "SB_SEC_HOOK_DENY"},
        {"id": "hook-loop", **webhook, "url_env": "SB_SEC_HOOK_LOOP"},
        {"id": "hook-typo", **webhook, "url_env": "SB_SEC_HOOK_TYPO"},
        {"id": "masto", "kind": "mastodon", "api_base_url": mastodon.url,
         "access_token_env": "SB_SEC_MASTODON", "max_retries": 0, "timeout": 5},
    ]
    feeds = [f for f in matrix.feed_config("") if f["id"] != "poll"]
    feeds[0]["rules"] = [{"match": {"alertname": "Injected"}, "runbook": "sec-title"}]
    config = base_config(tmp, 0, channels=channels, feeds=feeds,
                         metrics={"token_env": "SB_SEC_METRICS"})
    env = {**matrix.FEED_ENV, "SB_SEC_HOOK_DENY": hook.base_url + DENY_PATH,
           "SB_SEC_HOOK_LOOP": hook.base_url + LOOP_PATH, "SB_SEC_HOOK_TYPO": SCHEME_URL,
           "SB_SEC_MASTODON": MASTODON_TOKEN, "SB_SEC_METRICS": METRICS_TOKEN}
    proc = DaemonProcess(tmp, config=config, runbooks={"sec-title": TEMPLATE_RUNBOOK}, env=env)
    proc.start()
    try:
        yield proc
    finally:
        proc.kill()


def _secret_values() -> dict[str, str]:
    """Every credential the daemon holds, and what would betray one."""
    values = {f"{name} token": token for name, token in TOKENS.items()}
    values |= {f"{name} token sha256": _digest(token) for name, token in TOKENS.items()}
    values |= {"pagerduty secret": matrix.PD_SECRET, "json feed token": matrix.JSON_TOKEN,
               "json feed secret": matrix.JSON_SECRET, "mastodon token": MASTODON_TOKEN,
               "metrics token": METRICS_TOKEN}
    return values


def _url_secrets(channel: str) -> dict[str, str]:
    path = {"hook-deny": DENY_PATH, "hook-loop": LOOP_PATH,
            "hook-typo": SCHEME_URL.split("9", 1)[1]}[channel]
    return {f"{channel} URL path": path, f"{channel} URL secret": path.rsplit("/", 1)[1]}


def _leaks(text: str, secrets: dict[str, str]) -> list[str]:
    return sorted(name for name, value in secrets.items() if value in text)


class Transcript:
    """Everything the daemon said to its callers during the module's tests."""

    def __init__(self) -> None:
        self.answers: list[str] = []


@pytest.fixture(scope="module")
def transcript() -> Transcript:
    return Transcript()


def _call(daemon: DaemonProcess, transcript: Transcript, method: str, path: str,
          **kwargs: Any) -> requests.Response:
    response = requests.request(method, daemon.url + path, timeout=60, **kwargs)
    transcript.answers.append(f"{method} {path} -> {response.status_code} "
                              f"{response.headers} {response.text}")
    return response


def test_wrong_credentials_are_refused_without_echoing_them(daemon: DaemonProcess,
                                                           transcript: Transcript) -> None:
    body = matrix.alertmanager_body()
    for token in TOKENS.values():  # every real token, close but wrong, and borrowed
        for header in (f"Bearer {token}x", f"Bearer x{token}", f"Basic {token}"):
            response = _call(daemon, transcript, "GET", "/api/v1/status",
                             headers={"Authorization": header})
            assert response.status_code == 401
        for feed in ("am", "pd", "js"):
            _call(daemon, transcript, "POST", f"/feeds/{feed}", data=body,
                  headers={"Authorization": f"Bearer {token}x"})
    for secret in (matrix.PD_SECRET, matrix.JSON_SECRET):
        wrong = hmac.new(secret.encode(), body + b"x", hashlib.sha256).hexdigest()
        assert _call(daemon, transcript, "POST", "/feeds/pd", data=body,
                     headers={"X-PagerDuty-Signature": f"v1={wrong}"}).status_code == 401
        assert _call(daemon, transcript, "POST", "/feeds/js", data=body, headers={
            "Authorization": f"Bearer {matrix.JSON_TOKEN}", "X-Signature": wrong,
        }).status_code == 401
    assert _call(daemon, transcript, "GET", "/metrics",
                 headers={"Authorization": f"Bearer {METRICS_TOKEN}x"}).status_code == 401
    leaks = [(name, answer[:200]) for answer in transcript.answers
             for name in _leaks(answer, _secret_values())]
    assert leaks == []


@pytest.mark.parametrize("channel", ["hook-deny", "hook-loop", "hook-typo"])
def test_a_failing_webhook_never_shows_its_url(daemon: DaemonProcess, transcript: Transcript,
                                               channel: str) -> None:
    response = _call(daemon, transcript, "POST", "/api/v1/send",
                     json={"channel": channel, "text": f"to {channel}"},
                     headers={"Authorization": f"Bearer {TOKENS['ops']}"})
    assert response.status_code == 502, response.text
    seen = {"the send's 502 answer": response.text}
    post_id = response.json()["error"]["message"].split()[1]
    for path in ("/api/v1/channels", f"/api/v1/posts?channel={channel}",
                 f"/api/v1/posts/{post_id}"):
        seen[f"GET {path} as viewer"] = _call(
            daemon, transcript, "GET", path,
            headers={"Authorization": f"Bearer {TOKENS['viewer']}"}).text
    seen["`switchboard channels` as viewer"] = daemon.cli("channels", role="viewer").stdout
    seen["the daemon log"] = daemon.log()
    leaks = {where: _leaks(text, _url_secrets(channel)) for where, text in seen.items()}
    assert {where: found for where, found in leaks.items() if found} == {}, \
        next(t for t in seen.values() if _leaks(t, _url_secrets(channel)))[:300]


def test_a_refused_mastodon_token_is_not_repeated(daemon: DaemonProcess,
                                                  transcript: Transcript) -> None:
    response = _call(daemon, transcript, "POST", "/api/v1/send",
                     json={"channel": "masto", "text": "to mastodon", "kind": "operational"},
                     headers={"Authorization": f"Bearer {TOKENS['admin']}"})
    assert response.status_code == 502, response.text
    channels = _call(daemon, transcript, "GET", "/api/v1/channels",
                     headers={"Authorization": f"Bearer {TOKENS['viewer']}"}).json()
    masto = next(c for c in channels if c["id"] == "masto")
    assert masto["last_error"]["permanent"] is True
    assert _leaks(response.text + str(masto), _secret_values()) == []


def test_feed_text_reaches_a_post_as_text_not_as_a_template(daemon: DaemonProcess,
                                                            transcript: Transcript) -> None:
    hostile = "{{ 7*7 }} {{ ''.__class__.__mro__ }}"
    alert = {"version": "4", "status": "firing", "alerts": [{
        "status": "firing", "labels": {"alertname": "Injected"},
        "annotations": {"summary": hostile}, "fingerprint": "inject-1"}]}
    response = _call(daemon, transcript, "POST", "/feeds/am", json=alert,
                     headers={"Authorization": f"Bearer {TOKENS['feed']}"})
    assert response.status_code == 202 and response.json()["outcomes"] == ["declared"]
    posted = daemon.wait_for(lambda: [m["text"] for m in daemon.outbox()
                                      if m["text"].startswith("Known:")])
    assert posted == [f"Known: {hostile}"]


def test_a_reload_refusing_inline_secrets_does_not_repeat_them(daemon: DaemonProcess) -> None:
    broken = yaml.safe_load(yaml.safe_dump(daemon.config))
    broken["access"][0] = {"name": "admin", "role": "admin", "token": TOKENS["admin"]}
    broken["channels"][2] = {"id": "hook-deny", "kind": "webhook", "audience": "internal",
                             "url": DENY_PATH}
    broken["feeds"][1] = {"id": "pd", "kind": "pagerduty", "secret": matrix.PD_SECRET}
    broken["metrics"] = {"token_sha256": METRICS_TOKEN}
    original = daemon.config
    daemon.write_config(broken)
    try:
        result = daemon.cli("check", "-c", str(daemon.config_path))
        assert result.returncode == 1
        daemon.signal(1)  # SIGHUP
        daemon.wait_for(lambda: "reload_failed" in daemon.log())
    finally:
        daemon.write_config(original)
    said = result.stdout + result.stderr + daemon.log()
    assert "secrets are not written in the file" in said
    assert _leaks(said, {**_secret_values(), **_url_secrets("hook-deny")}) == []


def test_the_log_and_every_answer_hold_no_credential(daemon: DaemonProcess,
                                                     transcript: Transcript) -> None:
    admin = {"Authorization": f"Bearer {TOKENS['admin']}"}
    for path in ("/api/v1/status", "/api/v1/channels", "/api/v1/posts",
                 "/api/v1/incidents?all=true", "/api/v1/incidents/INC-1"):
        _call(daemon, transcript, "GET", path, headers=admin)
    _call(daemon, transcript, "GET", "/metrics",
          headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    for args in (("status", "--json"), ("channels", "--json"), ("post", "list", "--json")):
        transcript.answers.append(daemon.cli(*args).stdout)
    daemon.stop()
    everything = "\n".join([*transcript.answers, daemon.log()])
    assert "feed_refused" in everything  # the refusals above were logged ...
    assert _leaks(everything, _secret_values()) == []  # ... without what was refused

