"""The Eurostar scenario, end to end, on the embedded default config (`make demo`).

This script starts a real switchboard daemon on a copy of
`config/switchboard.yaml` (its own state directory and port, so a `make run`
next to it is left alone), then plays the incident as marketing, Alertmanager
and the ops team would: through the CLI, the HTTP API and the feed endpoint.
It narrates each step and prints what customers saw, and exits 0 when the
story went as it should.

    python demo/eurostar.py [--keep]     # --keep leaves the work directory behind
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import requests
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "config" / "switchboard.yaml"
RUNBOOKS = ROOT / "runbooks"

# The shipped runbook's clock, sped up 300 times (the cooldown more).
SPEED_UP = {
    "every: 30m": "every: 6s",
    "at: 60m": "at: 12s",
    "cooldown: 2h": "cooldown: 3s",
}
REMIND_EVERY, ESCALATE_AT, COOLDOWN = 6.0, 12.0, 3.0

OFFERS = [  # (due, text) relative to the moment marketing schedules them
    ("+2s", "Flash sale! Paris from £39 this weekend only. Book now!"),
    ("+5s", "Brussels from £35: the perfect city break. Treat yourself!"),
    ("+8s", "Kids go free this Easter on every Eurostar to Amsterdam!"),
    ("+11s", "Upgrade to Business Premier for just £20 today!"),
]

INTRO = """
    Trains stop in the tunnel while the marketing calendar keeps firing cheerful
    offers: the Eurostar story. Here switchboard holds the offers back, hands the
    channel to ops, who follow the rail-disruption runbook, and gives it back to
    marketing when it is over.

    Time runs fast: the shipped runbook is copied with its clock sped up 300 times
    (the 30-minute update reminder comes every 6 s, the one-hour escalation at 12 s)
    and a 3 s cooldown instead of 2 hours."""

T = TypeVar("T")


class DemoFailed(Exception):
    pass


# -- narration ----------------------------------------------------------------

def say(text: str) -> None:
    for paragraph in textwrap.dedent(text).strip().split("\n\n"):
        print()
        print(textwrap.fill(" ".join(paragraph.split()), width=88))
    sys.stdout.flush()


def heading(text: str) -> None:
    print(f"\n=== {text} " + "=" * max(0, 82 - len(text)))


def indent(text: str) -> str:
    return textwrap.indent(text.rstrip("\n"), "    ") if text.strip() else "    (nothing)"


# -- the daemon ---------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prepare(workdir: Path, port: int) -> Path:
    """The embedded default config with its own port, and the runbooks with a fast clock.

    The config's relative paths (state, tokens, outbox, runbooks) resolve next
    to the copy, so everything the demo writes stays in `workdir`.
    """
    config = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    config["listen"] = f"127.0.0.1:{port}"
    path = workdir / "switchboard.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    shutil.copytree(RUNBOOKS, workdir / "runbooks")
    rail = workdir / "runbooks" / "rail-disruption.yaml"
    text = rail.read_text(encoding="utf-8")
    for old, new in SPEED_UP.items():
        if text.count(old) != 1:
            raise DemoFailed(f"{rail.name}: expected one {old!r} to speed up")
        text = text.replace(old, new)
    rail.write_text(text, encoding="utf-8")
    return path


class Demo:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = prepare(workdir, self.port)
        self.tokens = workdir / "var" / "tokens"
        self.console = workdir / "ops-chat.out"  # the console channel prints here
        self.log = workdir / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.shown_chat = 0

    def start(self) -> None:
        with open(self.console, "wb") as out, open(self.log, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "switchboard", "run", "-c", str(self.config)],
                stdout=out, stderr=err, cwd=self.workdir, env=self._env())
        self.wait_for("the daemon to be ready", self._ready, timeout=30)

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise DemoFailed(f"the daemon exited with {self.proc.returncode}")
        try:
            return requests.get(self.url + "/readyz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def _env(self, role: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("SWITCHBOARD_")}  # never a user's daemon or token
        env["SWITCHBOARD_URL"] = self.url
        if role is not None:
            env["SWITCHBOARD_TOKEN_FILE"] = str(self.tokens / f"{role}.token")
        return env

    # -- acting as a user ---------------------------------------------------

    def cli(self, role: str, *args: str, expect: int = 0) -> str:
        """Run `switchboard ARGS` as `role`, print the command and its output."""
        shown = " ".join(_quote(a) for a in args)
        print(f"\n  [{role}] $ switchboard {shown}")
        done = subprocess.run([sys.executable, "-m", "switchboard", *args],
                              env=self._env(role), capture_output=True, text=True,
                              timeout=60)
        output = done.stdout + done.stderr
        print(indent(output))
        if done.returncode != expect:
            raise DemoFailed(f"`switchboard {shown}` exited {done.returncode}, "
                             f"expected {expect}")
        return done.stdout

    def alert(self, status: str) -> dict[str, Any]:
        """What Alertmanager POSTs to a webhook receiver (payload version 4)."""
        now = datetime.now(UTC).isoformat()
        labels = {"alertname": "TrainsStoppedInTunnel", "severity": "critical",
                  "service": "rail", "route": "london-paris"}
        summary = "Eurostar trains stopped in the Channel Tunnel"
        body: dict[str, Any] = {
            "version": "4", "groupKey": '{}:{alertname="TrainsStoppedInTunnel"}',
            "truncatedAlerts": 0, "status": status, "receiver": "switchboard",
            "groupLabels": {"alertname": labels["alertname"]}, "commonLabels": labels,
            "commonAnnotations": {}, "externalURL": "http://alertmanager.example:9093",
            "alerts": [{
                "status": status, "labels": labels,
                "annotations": {
                    "summary": summary,
                    "description": "Five trains stopped between Folkestone and Coquelles; "
                                   "power failure on the catenary."},
                "startsAt": now, "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.example:9090/graph",
                "fingerprint": "c0ffee0123456789"}],
        }
        token = (self.tokens / "alertmanager-feed.token").read_text(encoding="utf-8").strip()
        print("\n  [alertmanager] POST /feeds/alertmanager  (webhook payload version 4)")
        print(indent(f"labels {json.dumps(labels)}\nsummary {json.dumps(summary)}"))
        response = requests.post(self.url + "/feeds/alertmanager", json=body, timeout=10,
                                 headers={"Authorization": f"Bearer {token}"})
        print(indent(f"{response.status_code} {response.text}"))
        if response.status_code != 202:
            raise DemoFailed(f"the feed answered {response.status_code}")
        result: dict[str, Any] = response.json()
        return result

    # -- watching -----------------------------------------------------------

    def held(self) -> list[dict[str, Any]]:
        token = (self.tokens / "viewer.token").read_text(encoding="utf-8").strip()
        response = requests.get(self.url + "/api/v1/posts", params={"state": "held"},
                                headers={"Authorization": f"Bearer {token}"}, timeout=10)
        response.raise_for_status()
        posts: list[dict[str, Any]] = response.json()
        return posts

    def outbox(self) -> list[dict[str, Any]]:
        path = self.workdir / "var" / "outbox.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip()]

    def chat(self) -> list[str]:
        lines = self.console.read_text(encoding="utf-8", errors="replace").splitlines()
        return [line for line in lines if line.startswith("[ops-chat]")]

    def show_chat(self) -> None:
        lines = self.chat()
        for line in lines[self.shown_chat:]:
            print(f"    {line}")
        self.shown_chat = len(lines)

    def published(self, marker: str) -> dict[str, Any] | None:
        return next((line for line in self.outbox() if marker in line.get("text", "")), None)

    def wait_for(self, what: str, predicate: Callable[[], T | None], timeout: float = 10.0,
                 ) -> T:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise DemoFailed(f"waited {timeout:.0f}s for {what}")
            time.sleep(0.05)


def _quote(arg: str) -> str:
    return f"'{arg}'" if any(c in arg for c in " !?;:'£") else arg


def print_outbox(lines: Sequence[dict[str, Any]]) -> None:
    for line in lines:
        stamp = line.get("sent_at") or line.get("retracted_at") or ""
        clock = stamp[11:19]
        if "retract" in line:
            print(f"    {clock}  RETRACTED   post {line['retract']} deleted from the channel")
        else:
            print(f"    {clock}  {line['kind']:<11} {line['text']}")


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


# -- the story ----------------------------------------------------------------

def story(demo: Demo) -> None:
    heading("1. A normal morning")
    say(f"""
        switchboard runs on the embedded default config (config/switchboard.yaml): one
        public channel, the outbox (a JSON-lines file standing in for the X account,
        here {demo.workdir / 'var' / 'outbox.jsonl'}), and an internal ops-chat
        (printed on the console). The daemon listens on {demo.url}, with its own state
        in {demo.workdir}.

        Marketing has scheduled the day's offers, days ahead, as usual:""")
    for due, text in OFFERS:
        demo.cli("marketing", "post", "schedule", "--channel", "outbox", "--at", due,
                 "--text", text)
    first = demo.wait_for("the first offer", lambda: demo.published(OFFERS[0][1][:20]))
    say("The first offer goes out on time. Customers see it:")
    print_outbox([first])

    heading("2. Trains stop in the tunnel")
    say("""
        Power fails in the Channel Tunnel and five trains stop. Monitoring fires and
        Alertmanager calls switchboard's webhook. The default config has a rule for it:
        {severity: critical, service: rail} -> runbook rail-disruption.""")
    result = demo.alert("firing")
    if result.get("outcomes") != ["declared"]:
        raise DemoFailed(f"the alert did not declare an incident: {result}")
    declared = time.time()
    say("""
        The incident is declared and durable before Alertmanager got its 202: from that
        moment no marketing post can start on the channel. The runbook posts the
        pre-approved holding statement, deletes the offer that went out moments ago,
        and tells the ops chat that ops has control:""")
    demo.wait_for("the holding statement", lambda: demo.published("We know services"))
    demo.wait_for("the retraction", lambda: any("retract" in line for line in demo.outbox()))
    print_outbox(demo.outbox()[1:])
    demo.wait_for("the hand-over notice", lambda: len(demo.chat()) >= 1)
    demo.show_chat()
    demo.cli("ops", "incident", "list")
    demo.cli("viewer", "channels")

    heading("3. The offers keep coming due; switchboard holds them")
    say("""
        Someone in marketing, not yet aware, tries to push an offer out by hand. The
        gate refuses it and names the incident:""")
    demo.cli("marketing", "post", "send", "--channel", "outbox", "--text",
             "Last chance: 2 for 1 on all Paris tickets!", expect=1)
    sleep_until(declared + REMIND_EVERY + 0.4)
    say("""
        The scheduled offers that came due were suppressed, not published: they stay
        tied to the incident for review.""")
    demo.cli("viewer", "post", "list", "--state", "suppressed")

    heading("4. Keeping customers informed")
    say(f"""
        The runbook promised a regular update. {REMIND_EVERY:.0f} seconds in (30 minutes
        in the real runbook) no update has gone out since the holding statement, so
        switchboard reminds ops in the chat:""")
    demo.wait_for("the first reminder", lambda: any("no operational update" in line
                                                     for line in demo.chat()))
    demo.show_chat()
    say("Ops post an update to the public channel:")
    demo.cli("ops", "incident", "update", "INC-1", "--text",
             "Update: trains are moving again slowly towards Calais. Water and snacks are "
             "being handed out. Next update within 30 minutes.")
    sleep_until(declared + ESCALATE_AT + 0.5)
    say(f"""
        At {ESCALATE_AT:.0f} seconds (an hour in the real runbook) the next reminder stays
        silent, because an update went out within the interval; the escalation to the
        duty manager fires as planned:""")
    demo.wait_for("the escalation", lambda: any("open for an hour" in line
                                                 for line in demo.chat()))
    demo.show_chat()

    heading("5. Service restored")
    say("Trains reach Calais. Ops resolve the incident:")
    demo.cli("ops", "incident", "resolve", "INC-1", "--note", "all trains arrived")
    demo.wait_for("the all-clear", lambda: demo.published("running normally"))
    say(f"""
        The runbook posts the all-clear. The channel stays with ops for the cooldown
        ({COOLDOWN:.0f} seconds here, 2 hours in the real runbook), so no offer bursts
        out right after the apology. Marketing schedules a fresh post for after it:""")
    demo.cli("marketing", "post", "schedule", "--channel", "outbox", "--at", "+4s", "--text",
             "Thank you for travelling with us. We are back to our normal timetable.")
    demo.wait_for("the post after the cooldown",
                  lambda: demo.published("back to our normal timetable"), timeout=15)
    demo.cli("viewer", "channels")

    heading("6. What customers saw")
    say("The public outbox, in order (no offer while the trains were stuck):")
    print_outbox(demo.outbox())
    demo.cli("viewer", "incident", "show", "INC-1")

    heading("7. Marketing's review")
    say("""
        The runbook's held-post policy is review: nothing that was held goes out by
        itself. Marketing decides, post by post, with `switchboard post release ID
        [--at WHEN]` or `switchboard post drop ID`. Held for review:""")
    held = demo.held()
    if sorted(p["text"] for p in held) != sorted(text for _, text in OFFERS[1:]):
        raise DemoFailed(f"expected the offers due during the incident held, not {held}")
    demo.cli("marketing", "post", "list", "--state", "held")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="switchboard-demo-"))
    demo = Demo(workdir)
    started = time.monotonic()
    try:
        heading("switchboard demo: trains stuck in the tunnel, offers held back")
        say(INTRO)
        demo.start()
        story(demo)
    except (DemoFailed, requests.RequestException, subprocess.SubprocessError) as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        print(f"daemon log ({demo.log}):", file=sys.stderr)
        if demo.log.exists():
            print(indent("\n".join(demo.log.read_text(errors="replace").splitlines()[-20:])),
                  file=sys.stderr)
        args.keep = True
        return 1
    finally:
        demo.stop()
        if args.keep:
            print(f"\n(work directory kept: {workdir})", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        print(f"\n(demo ran for {time.monotonic() - started:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
