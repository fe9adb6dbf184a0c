from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.channels.harness import (
    GATED_PER_REQUEST_KINDS,
    LOCAL_KINDS,
    NETWORK_KINDS,
    ONE_SHOT_KINDS,
    REPEATABLE_KINDS,
    Harness,
    local_harness,
    network_harness,
)


def _with_fake(kind: str) -> Iterator[Harness]:
    harness = network_harness(kind)
    assert harness.fake is not None
    try:
        yield harness
    finally:
        harness.fake.stop()


@pytest.fixture(params=NETWORK_KINDS)
def remote(request: pytest.FixtureRequest) -> Iterator[Harness]:
    """A network channel kind with its fake server running."""
    yield from _with_fake(request.param)


@pytest.fixture(params=REPEATABLE_KINDS)
def repeatable(request: pytest.FixtureRequest) -> Iterator[Harness]:
    """A network kind whose platform recognises a repeated request (a key, a record
    key, a duplicate check, a read-back), so uncertain attempts are retried."""
    yield from _with_fake(request.param)


@pytest.fixture(params=GATED_PER_REQUEST_KINDS)
def gated(request: pytest.FixtureRequest) -> Iterator[Harness]:
    """A network kind that asks the gate before every request of a send."""
    yield from _with_fake(request.param)


@pytest.fixture(params=ONE_SHOT_KINDS)
def one_shot(request: pytest.FixtureRequest) -> Iterator[Harness]:
    """A network kind whose platform cannot recognise a repeated request."""
    yield from _with_fake(request.param)


@pytest.fixture(params=NETWORK_KINDS + LOCAL_KINDS)
def any_kind(request: pytest.FixtureRequest, tmp_path: Path,
             capsys: pytest.CaptureFixture[str]) -> Iterator[Harness]:
    """Every channel kind: the network ones against their fakes, the local ones as they are."""
    if request.param in NETWORK_KINDS:
        yield from _with_fake(request.param)
    else:
        yield local_harness(request.param, tmp_path, capsys)


@pytest.fixture
def x() -> Iterator[Harness]:
    yield from _with_fake("x")


@pytest.fixture
def mastodon() -> Iterator[Harness]:
    yield from _with_fake("mastodon")


@pytest.fixture
def webhook() -> Iterator[Harness]:
    yield from _with_fake("webhook")


@pytest.fixture
def bluesky() -> Iterator[Harness]:
    yield from _with_fake("bluesky")


@pytest.fixture
def facebook() -> Iterator[Harness]:
    yield from _with_fake("facebook")


@pytest.fixture
def threads() -> Iterator[Harness]:
    yield from _with_fake("threads")


@pytest.fixture
def telegram() -> Iterator[Harness]:
    yield from _with_fake("telegram")


@pytest.fixture
def teams() -> Iterator[Harness]:
    yield from _with_fake("teams")
