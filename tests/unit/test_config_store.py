"""The `store:` section: SQLite by default, or a PostgreSQL shared by a leader and
its standbys; validated like every other section, its connection string a
secret that is never shown, and `check` never connects."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from switchboard import config
from switchboard.yamldoc import InvalidFile
from tests.unit.test_config_check import GOOD, check

SECRET = "s3cret-pw"


def load(tmp_path: Path, store: str, env: dict[str, str] | None = None) -> config.Config:
    path = tmp_path / "switchboard.yaml"
    path.write_text(GOOD + store)
    return config.load(path, env={"SB_CHECK_TOKEN": "t" * 20, **(env or {})})


def problems(tmp_path: Path, store: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(InvalidFile) as caught:
        load(tmp_path, store, env)
    return str(caught.value).replace(str(tmp_path / "switchboard.yaml"), "CONFIG")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_without_a_store_section_the_store_is_sqlite_in_state_dir(tmp_path: Path) -> None:
    loaded = load(tmp_path, "")
    assert loaded.store == config.StoreConfig("sqlite") and not loaded.store.shared
    assert load(tmp_path, "store: {backend: sqlite}\n").store.backend == "sqlite"


def test_postgresql_reads_its_connection_string_from_the_environment_and_never_shows_it(
        tmp_path: Path) -> None:
    dsn = f"host=db.internal dbname=switchboard user=sb password={SECRET}"
    loaded = load(tmp_path, "store: {backend: postgresql, dsn_env: SB_DSN}\n", {"SB_DSN": dsn})
    assert loaded.store.shared and loaded.store.dsn == dsn
    assert SECRET not in repr(loaded)


def test_postgresql_reads_its_connection_string_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "dsn").write_text("postgresql://sb@db.internal/switchboard\n")
    loaded = load(tmp_path, f"store: {{backend: postgresql, dsn_file: {tmp_path / 'dsn'}}}\n")
    assert loaded.store.dsn == "postgresql://sb@db.internal/switchboard"


@pytest.mark.parametrize(("store", "env", "expected"), [
    ("store: {backend: postgresql, dsn_env: SB_DSN}\n", {},
     "CONFIG:19:30: store.dsn_env: environment variable SB_DSN is not set"),
    ("store: {backend: postgresql}\n", {}, "CONFIG:19:1: store: missing dsn_env or dsn_file"),
    ("store: {backend: postgresql, dsn: 'host=x'}\n", {},
     "CONFIG:19:30: store.dsn: secrets are not written in the file: use dsn_env or dsn_file"),
    ("store: {backend: mysql}\n", {},
     "CONFIG:19:9: store.backend: must be one of sqlite, postgresql"),
    ("store: {backend: sqlite, dsn_env: SB_DSN}\n", {"SB_DSN": "host=x"},
     "CONFIG:19:26: store.dsn_env: dsn_env is for backend postgresql"),
    ("store: {backend: postgresql, dsn_env: SB_DSN}\n",
     {"SB_DSN": f"host=x password={SECRET} oops"},
     "CONFIG:19:30: store.dsn_env: not a valid PostgreSQL connection string"),
])
def test_a_bad_store_section_is_refused_with_where_and_why(
        tmp_path: Path, store: str, env: dict[str, str], expected: str) -> None:
    found = problems(tmp_path, store, env)
    assert expected in found, found
    assert SECRET not in found


def test_check_validates_a_postgresql_store_without_connecting(tmp_path: Path) -> None:
    # Nothing listens there: a check that tried to connect would fail or hang.
    dsn = f"host=127.0.0.1 port={closed_port()} dbname=x password={SECRET} connect_timeout=30"
    code, out = check(tmp_path, GOOD + "store: {backend: postgresql, dsn_env: SB_DSN}\n",
                      {"SB_CHECK_TOKEN": "t" * 20, "SB_DSN": dsn})
    assert code == 0, out
    assert SECRET not in out
