"""Strangers' bodies on the push feeds are refused from the headers (design §7.1).

The real daemon's memory is read with psutil while many unauthenticated
connections each send all but the last byte of a 1 MiB body and wait.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import requests

from tests.daemon import TOKENS, DaemonProcess, base_config, free_port

MIB = 1024 * 1024
STRANGERS = 300
# A bound on growth that buffering the strangers' bodies (300 MiB) could not meet.
UNBUFFERED_MIB = 100
FEEDS = [{"id": "alertmanager", "kind": "alertmanager", "token_env": "SB_TEST_FEED",
          "rules": [{"match": {"alertname": "Outage"}, "runbook": "service-outage"}]},
         {"id": "pagerduty", "kind": "pagerduty", "secret_env": "SB_TEST_PD_SECRET",
          "rules": [{"match": {"event_type": "incident.triggered"},
                     "runbook": "service-outage"}]}]


def feed_daemon(tmp: Path, **env: str) -> DaemonProcess:
    config = base_config(tmp, free_port(), feeds=FEEDS)
    return DaemonProcess(tmp, config, env={"SB_TEST_PD_SECRET": "pd-secret-0123456789",
                                           **env}).start()


def one_byte_short(port: int, path: str, signature: bool) -> socket.socket:
    head = (f"POST {path} HTTP/1.1\r\nHost: switchboard\r\nContent-Type: application/json\r\n"
            f"Content-Length: {MIB}\r\n")
    if signature:  # the right shape, but no one could have computed it
        head += "X-PagerDuty-Signature: v1=" + "0" * 64 + "\r\n"
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(head.encode() + b"\r\n" + b" " * (MIB - 1))
    return sock


def rss_mib(daemon: DaemonProcess) -> float:
    assert daemon.proc is not None
    return float(psutil.Process(daemon.proc.pid).memory_info().rss) / MIB


def hold_strangers(daemon: DaemonProcess, path: str, signature: bool) -> list[socket.socket]:
    with ThreadPoolExecutor(32) as pool:
        return list(pool.map(lambda _: one_byte_short(daemon.port, path, signature),
                             range(STRANGERS)))


def test_unauthenticated_megabytes_on_a_feed_never_reach_the_daemons_memory(
        tmp_path: Path) -> None:
    daemon = feed_daemon(tmp_path)
    try:
        before = rss_mib(daemon)
        socks = hold_strangers(daemon, "/feeds/alertmanager", signature=False)
        try:
            time.sleep(0.5)
            grown = rss_mib(daemon) - before
            print(f"RSS grew by {grown:.0f} MiB")
            answers = [s.recv(200) for s in socks]
        finally:
            for sock in socks:
                sock.close()
        assert all(a.startswith(b"HTTP/1.1 401") for a in answers), answers[:3]
        # 300 MiB were sent; the refused bodies were never buffered (that would be
        # 300 MiB more). What grows is the connections' own buffers, 45-65 MiB on a
        # quiet machine and more where the allocator is busy.
        assert grown < UNBUFFERED_MIB, f"RSS grew by {grown:.0f} MiB"
        response = requests.post(daemon.url + "/feeds/alertmanager", timeout=10,
                                 json={"version": "4", "status": "firing", "alerts": []},
                                 headers={"Authorization": f"Bearer {TOKENS['feed']}"})
        assert response.status_code == 202
    finally:
        daemon.kill()


def test_signed_looking_bodies_are_buffered_only_a_few_at_a_time(tmp_path: Path) -> None:
    daemon = feed_daemon(tmp_path, SWITCHBOARD_BODY_TIMEOUT="2")
    try:
        before = rss_mib(daemon)
        socks = hold_strangers(daemon, "/feeds/pagerduty", signature=True)
        try:
            time.sleep(0.5)
            grown = rss_mib(daemon) - before
            print(f"RSS grew by {grown:.0f} MiB")
            for sock in socks:
                sock.settimeout(10)
            # The last byte never comes: each body is given up at its deadline.
            answers = [s.recv(200) for s in socks]
        finally:
            for sock in socks:
                sock.close()
        # 32 bodies at once, not 300: half of what buffering them all would take
        # (60-65 MiB on a quiet machine, 125 once on a loaded one).
        assert grown < STRANGERS / 2, f"RSS grew by {grown:.0f} MiB"
        statuses = [a[:12] for a in answers]
        # A few bodies were taken in and given up at their deadline; the rest
        # were told to retry without being read.
        assert set(statuses) == {b"HTTP/1.1 408", b"HTTP/1.1 503"}, answers[:3]
        assert statuses.count(b"HTTP/1.1 408") <= 32
        assert daemon.metric("switchboard_feed_errors_total",
                             {"feed": "pagerduty", "reason": "busy"}) == \
            statuses.count(b"HTTP/1.1 503")
        body = json.dumps({"event": {"event_type": "pagey.ping", "resource_type": "pagey",
                                     "data": {}}}).encode()
        digest = hmac.new(b"pd-secret-0123456789", body, hashlib.sha256).hexdigest()
        response = requests.post(daemon.url + "/feeds/pagerduty", data=body, timeout=10,
                                 headers={"X-PagerDuty-Signature": f"v1={digest}",
                                          "Content-Type": "application/json"})
        assert response.status_code == 202, response.text
    finally:
        daemon.kill()
