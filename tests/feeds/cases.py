"""One valid, real payload per feed kind, with what it should give: the
material the contract and fuzz suites run over every kind."""

from __future__ import annotations

import hashlib
import hmac
import random
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from google.protobuf import text_format  # type: ignore[import-untyped]
from google.transit import gtfs_realtime_pb2

from switchboard.config import FeedConfig
from switchboard.feeds import FeedParser, Signal, parser_for

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
TOKEN = "s3cret-feed-token"
SECRET = "pd-webhook-secret"
JSON_FIELDS: dict[str, Any] = {
    "items": "alerts", "key": "fingerprint", "status": "status",
    "title": "annotations.summary", "labels": "labels", "resolved_values": ["resolved"],
}
# A time at which the NWS index's two alerts are both still in force.
NWS_NOW = datetime(2024, 5, 23, 0, 58, tzinfo=UTC)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def gtfs_fixture() -> bytes:
    """The spec's example feed is protobuf text format; feeds serve the binary."""
    message = text_format.Parse((FIXTURES / "gtfs-rt-alerts.asciipb").read_text(),
                                gtfs_realtime_pb2.FeedMessage())
    return bytes(message.SerializeToString())


def feed_config(kind: str, **overrides: Any) -> FeedConfig:
    base: dict[str, Any] = {"id": f"{kind}-feed", "kind": kind}
    if kind in ("cap", "atom", "rss", "statuspage", "gtfs-rt", "siri-sx"):
        base.update(url="http://127.0.0.1:9/feed", every=timedelta(seconds=60))
    if kind == "alertmanager":
        base["token_sha256"] = hashlib.sha256(TOKEN.encode()).hexdigest()
    if kind in ("pagerduty", "json"):
        base["secret"] = SECRET
    if kind == "json":
        base["fields"] = JSON_FIELDS
    base.update(overrides)
    return FeedConfig(**base)


def hmac_hex(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class FeedCase:
    kind: str
    valid: bytes
    keys: list[str]  # what `valid` gives, in order
    now: datetime
    xml: bool = False
    push: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def config(self) -> FeedConfig:
        return feed_config(self.kind)

    def parser(self) -> FeedParser:
        return parser_for(self.config())

    def good_headers(self, body: bytes) -> dict[str, str]:
        """Headers a genuine sender would attach to `body`."""
        if self.kind == "alertmanager":
            return {"Authorization": f"Bearer {TOKEN}"}
        if self.kind == "pagerduty":
            return {"X-PagerDuty-Signature": f"v1={hmac_hex(body)}"}
        if self.kind == "json":
            return {"X-Signature": f"sha256={hmac_hex(body)}"}
        return {}

    def wrong_top_level(self) -> bytes:
        """Well-formed in the kind's syntax, but not the document it expects."""
        if self.kind == "gtfs-rt":  # a bare Alert is valid protobuf, not a FeedMessage
            alert = gtfs_realtime_pb2.Alert(cause=gtfs_realtime_pb2.Alert.STRIKE)
            return bytes(alert.SerializeToString())
        if self.xml:
            return b"<?xml version='1.0'?><html><body><p>Service status</p></body></html>"
        return b'["alerts", {"id": 1}]'

    def root_element(self) -> str:
        """Start tag for hostile documents that otherwise look like this kind's."""
        if self.kind == "cap":
            return '<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">'
        if self.kind == "rss":
            return '<rss version="2.0"><channel>'
        if self.kind == "siri-sx":
            return '<Siri xmlns="http://www.siri.org.uk/siri" version="1.4">'
        return '<feed xmlns="http://www.w3.org/2005/Atom">'


STREAMYARD_FIRST = "tag:status.streamyard.com,2005:Incident/19937356"

CASES: dict[str, FeedCase] = {case.kind: case for case in (
    FeedCase("alertmanager", fixture("alertmanager-v4-firing.json"), ["1a30ba71cca2921f"],
             NWS_NOW, push=True),
    FeedCase("pagerduty", fixture("pagerduty-v3-incident-triggered.json"), ["QEXAMPLE1"],
             NWS_NOW, push=True),
    FeedCase("json", fixture("alertmanager-v4-resolved.json"),
             ["83eb2c81e0da3faf", "83eb2c81e0da3faf"], NWS_NOW, push=True),
    FeedCase("cap", fixture("nws-alerts.atom"),
             ["https://api.weather.gov/alerts/urn:oid:2.49.0.1.840.0."
              "601ab091b19b7cc3ccf16c56e68e88c53ff3d7c3.001.1",
              "https://api.weather.gov/alerts/urn:oid:2.49.0.1.840.0."
              "b5b8e1443ad052cbcebb03938824c1d699455e55.001.1"], NWS_NOW, xml=True),
    FeedCase("atom", fixture("statuspage-history.atom"), [STREAMYARD_FIRST], NWS_NOW,
             xml=True, extra={"count": 17}),
    FeedCase("rss", fixture("statuspage-history.atom"), [STREAMYARD_FIRST], NWS_NOW,
             xml=True, extra={"count": 17}),
    FeedCase("statuspage", fixture("statuspage-incidents.json"), ["n4njzfn1mqy0"], NWS_NOW),
    FeedCase("gtfs-rt", gtfs_fixture(), ["0"], datetime.fromtimestamp(1284460000, UTC)),
    FeedCase("siri-sx", fixture("siri-sx-1.4-kolumbus-situations-trimmed.xml"),
             [f"urn:DISSE:{n}" for n in range(304, 311)], NWS_NOW, xml=True),
)}
KINDS = sorted(CASES)
PUSH_KINDS = [kind for kind in KINDS if CASES[kind].push]
POLL_KINDS = [kind for kind in KINDS if not CASES[kind].push]
XML_KINDS = [kind for kind in KINDS if CASES[kind].xml]


def random_bytes(seed: int, size: int = 512) -> bytes:
    return random.Random(seed).randbytes(size)


def billion_laughs(root: str) -> bytes:
    """The classic entity bomb: a few hundred bytes that expand to 3 GB."""
    levels = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)]
    return _with_doctype(root, "\n".join(levels), "&lol9;")


def external_entity(root: str, target: str = "file:///etc/passwd") -> bytes:
    """XXE: an entity whose value the parser would read from `target`."""
    return _with_doctype(root, f'<!ENTITY xxe SYSTEM "{target}">', "&xxe;")


def _with_doctype(root: str, subset: str, reference: str) -> bytes:
    names = re.findall(r"<(\w+)", root)
    closing = "".join(f"</{name}>" for name in reversed(names))
    return (f'<?xml version="1.0"?>\n<!DOCTYPE {names[0]} [\n{subset}\n]>\n{root}'
            f"<title>{reference}</title><identifier>{reference}</identifier>"
            f"{closing}").encode()


def parse(kind: str, body: bytes, now: datetime = NWS_NOW, **config: Any) -> list[Signal]:
    return parser_for(feed_config(kind, **config)).parse(body, {}, now)


# Every real published document per kind (origins in tests/fixtures/SOURCES.md).
PAGERDUTY_DOCUMENTS = ["pagerduty-v3-incident-triggered.json",
                       "pagerduty-v3-incident-resolved.json",
                       "pagerduty-v3-incident-priority-updated.json",
                       "pagerduty-v3-incident-workflow-started.json",
                       "pagerduty-v3-incident-action-invocation-created.json",
                       "pagerduty-v3-incident-role-assigned.json",
                       "pagerduty-v3-incident-task-created.json"]
CAP_DOCUMENTS = [*sorted(p.name for p in FIXTURES.glob("cap-1.*.xml")), "nws-alerts.atom"]
SIRI_DOCUMENTS = sorted(p.name for p in FIXTURES.glob("siri-sx-*.xml"))
STATUS_FEEDS = ["statuspage-history.atom", "statuspage-saucelabs-history-maintenance.atom"]
REAL_DOCUMENTS: dict[str, list[str]] = {
    "alertmanager": ["alertmanager-v4-firing.json", "alertmanager-v4-resolved.json"],
    "json": ["alertmanager-v4-firing.json", "alertmanager-v4-resolved.json"],
    "pagerduty": PAGERDUTY_DOCUMENTS,
    "cap": CAP_DOCUMENTS,
    "atom": STATUS_FEEDS,
    "rss": STATUS_FEEDS,
    "statuspage": ["statuspage-incidents.json", "statuspage-incidents-unresolved.json",
                   "statuspage-discord-scheduled-maintenances.json",
                   "statuspage-discord-summary.json"],
    "gtfs-rt": ["gtfs-rt-alerts.asciipb"],
    "siri-sx": SIRI_DOCUMENTS,
}
# Documents that only say something is over: they must never declare.
CLEARING_DOCUMENTS: dict[str, list[str]] = {
    "alertmanager": ["alertmanager-v4-resolved.json"],
    "pagerduty": ["pagerduty-v3-incident-resolved.json"],
    "cap": ["cap-1.2-cancel.xml", "cap-1.2-environment-canada-allclear-en-fr.xml",
            "cap-1.2-paaq-tsunami-past.xml", "cap-1.1-usgs-earthquake-past.xml",
            "cap-1.2-oasis-example-a3-earthquake-update.xml"],
    "siri-sx": ["siri-sx-2.1-vdv736-end-message.xml"],
    "statuspage": ["statuspage-incidents.json", "statuspage-discord-scheduled-maintenances.json"],
}


def real_body(name: str) -> bytes:
    return gtfs_fixture() if name.endswith(".asciipb") else fixture(name)
