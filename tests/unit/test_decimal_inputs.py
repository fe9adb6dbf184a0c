"""Numbers read from text outside the code: only ASCII digits count.

Python's `str.isdigit` says yes to superscripts, Arabic-Indic and other Unicode digits; `int()`
then refuses some of them (a crash where a clear refusal belongs) and reads
others as a different number. Each door that reads a number is tried with them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from switchboard import refusals
from switchboard.api.common import parse_int
from switchboard.channels.outbox import _post_id
from switchboard.incidents.views import parse_incident_id
from switchboard.systemd import Notifier
from switchboard.text import decimal
from tests.unit.test_config_check import GOOD, check

# Superscript two, Arabic-Indic one-two, fullwidth one-two, 12 squared, Arabic-Indic three.
UNICODE_DIGITS = ["\u00b2", "\u0661\u0662", "\uff11\uff12", "12\u00b2", "\u0663"]


@pytest.mark.parametrize("text", [*UNICODE_DIGITS, "", "-1", "1.5", " 1", "1" * 19])
def test_decimal_refuses_anything_but_ascii_digits(text: str) -> None:
    assert decimal(text) is None


def test_decimal_reads_ascii_digits_up_to_the_limit() -> None:
    assert decimal("0") == 0
    assert decimal("1" * 18) == int("1" * 18)
    assert decimal("65535", 5) == 65535
    assert decimal("655350", 5) is None


@pytest.mark.parametrize("text", UNICODE_DIGITS)
def test_api_ids_with_unicode_digits_are_a_bad_request(text: str) -> None:
    with pytest.raises(refusals.Refused) as raised:
        parse_int(text, "post id")
    assert raised.value.status == 400
    with pytest.raises(refusals.Refused):
        parse_incident_id(f"INC-{text}")


@pytest.mark.parametrize("text", UNICODE_DIGITS)
def test_a_watchdog_interval_in_unicode_digits_is_not_a_watchdog(text: str) -> None:
    # systemd writes ASCII; anything else is not its variable, and must not crash the start.
    assert Notifier({"WATCHDOG_USEC": text}).watchdog_interval is None
    assert Notifier({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": text}
                    ).watchdog_interval == 0.5


def test_an_outbox_post_id_in_unicode_digits_is_kept_as_text() -> None:
    assert _post_id("42") == 42
    assert _post_id("4\u00b2") == "4\u00b2"


def test_a_listen_port_in_unicode_digits_is_a_config_problem(tmp_path: Path) -> None:
    code, out = check(tmp_path, GOOD.replace("127.0.0.1:8650", "127.0.0.1:8\uff1650"),
                      {"SB_CHECK_TOKEN": "t"})
    assert code == 1, out
    assert "CONFIG:1:1: listen: must be HOST:PORT, not '127.0.0.1:8\uff1650'" in out
    assert "Traceback" not in out
