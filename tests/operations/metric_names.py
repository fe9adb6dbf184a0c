"""The daemon's metric catalogue against the names that rules and dashboards use."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry

from switchboard.metrics import Metrics

# A metric name starts the token: `job="switchboard"` and `$instance` never match.
_NAME = re.compile(r"(?<![A-Za-z0-9_:])switchboard_[a-z_]+")


def used_in(expr: str) -> set[str]:
    return set(_NAME.findall(expr))


def exported() -> set[str]:
    return Metrics(CollectorRegistry()).names()
