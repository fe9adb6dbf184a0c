"""Runbook templates: variables, filters, strictness and the sandbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from jinja2.exceptions import SecurityError

from switchboard.feeds.signal import Signal
from switchboard.templates import (
    Context,
    IncidentView,
    SignalView,
    TemplateFailure,
    Templates,
    format_duration,
    render,
)

LONDON = ZoneInfo("Europe/London")
WINTER = datetime(2024, 1, 15, 9, 5, tzinfo=UTC)
SUMMER = datetime(2024, 7, 15, 9, 5, tzinfo=UTC)


def context(now: datetime = WINTER, signal: SignalView | None = None) -> Context:
    incident = IncidentView(id="INC-7", title="Signal failure at Ashford", severity="major",
                            runbook="rail-disruption", declared_at=now - timedelta(minutes=95),
                            channels=("outbox", "x-main"), reason="", source="manual")
    return Context(incident, now, signal or SignalView(), "outbox")


def london(source: str, ctx: Context | None = None) -> str:
    return render(source, ctx or context(), LONDON)


def test_it_renders_the_incident_and_channel() -> None:
    assert london("{{ incident.id }} {{ incident.title }} on {{ channel }}: "
                  "{{ incident.channels | join(', ') }}") == \
        "INC-7 Signal failure at Ashford on outbox: outbox, x-main"


def test_time_is_local_to_the_configured_timezone() -> None:
    assert london("{{ now | time }}") == "09:05"
    assert london("{{ now | time }}", context(SUMMER)) == "10:05"


def test_datetime_names_the_zone() -> None:
    assert london("{{ now | datetime }}") == "2024-01-15 09:05 GMT"
    assert london("{{ now | datetime }}", context(SUMMER)) == "2024-07-15 10:05 BST"


def test_duration_adds_to_now() -> None:
    assert london("{{ (now + duration('30m')) | time }}") == "09:35"


@pytest.mark.parametrize(("value", "text"), [
    (timedelta(0), "0m"),
    (timedelta(seconds=45), "45s"),
    (timedelta(minutes=30), "30m"),
    (timedelta(minutes=90), "1h 30m"),
    (timedelta(days=1, hours=2), "1d 2h"),
])
def test_the_duration_filter_reads_like_a_person(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


def test_the_duration_filter_takes_an_elapsed_time() -> None:
    assert london("open for {{ (now - incident.declared_at) | duration }}") == \
        "open for 1h 35m"


def test_the_text_is_stripped_of_surrounding_whitespace() -> None:
    assert london("\n  We know.  \n\n") == "We know."


def test_a_manual_incident_has_an_empty_signal_that_is_safe_to_read() -> None:
    source = ("{% if signal %}signal{% else %}by hand{% endif %}|{{ signal.title }}|"
              "{{ signal.get('event', 'Severe weather') }}|{{ signal.labels | length }}")
    assert london(source) == "by hand||Severe weather|0"


def test_a_signal_exposes_labels_then_annotations() -> None:
    signal = Signal(source="met", key="k1", status="firing", title="Flood warning",
                    at=WINTER, labels={"event": "Flood Warning"},
                    annotations={"areaDesc": "Kent", "event": "ignored"})
    ctx = context(signal=SignalView.of(signal))
    assert london("{% if signal %}{{ signal.get('event') }} for {{ signal.get('areaDesc') }}"
                  " ({{ signal.title }}, {{ signal.source }}){% endif %}", ctx) == \
        "Flood Warning for Kent (Flood warning, met)"


def test_an_undefined_name_fails_with_its_line() -> None:
    with pytest.raises(TemplateFailure) as caught:
        london("first line\n{{ incident.headline }}")
    assert caught.value.message == "undefined: 'incident' has no attribute 'headline'"
    assert caught.value.line == 2


def test_an_undefined_value_passed_to_a_filter_fails() -> None:
    with pytest.raises(TemplateFailure, match="'started' is undefined"):
        london("{{ started | time }}")


def test_a_syntax_error_fails_with_its_line() -> None:
    with pytest.raises(TemplateFailure) as caught:
        Templates().compile("ok\nok\n{% if %}")
    assert caught.value.line == 3
    assert caught.value.message.startswith("template syntax error: ")


def test_a_bad_duration_fails_clearly() -> None:
    with pytest.raises(TemplateFailure, match="bad duration 'soon'"):
        london("{{ duration('soon') }}")


def test_a_template_is_compiled_once_and_rendered_many_times() -> None:
    template = Templates(LONDON).compile("{{ now | time }}")
    assert [template.render(context(WINTER)), template.render(context(SUMMER))] == \
        ["09:05", "10:05"]


@pytest.mark.parametrize("source", [
    "{{ ''.__class__.__mro__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ incident.__class__.__init__.__globals__ }}",
    "{{ ().__class__.__base__.__subclasses__() }}",
    "{{ lipsum.__globals__['os'] }}",
    "{{ now.__reduce_ex__(2) }}",
])
def test_sandbox_escapes_are_refused(source: str) -> None:
    with pytest.raises(TemplateFailure, match=r"^not allowed in a template: ") as caught:
        london(source)
    assert isinstance(caught.value.__cause__, SecurityError)


def test_templates_cannot_change_what_they_are_given() -> None:
    signal = SignalView.of(Signal(source="f", key="k", status="firing", title="t", at=WINTER,
                                  labels={"event": "Flood"}))
    with pytest.raises(TemplateFailure, match=r"^not allowed in a template: "):
        london("{{ signal.labels.clear() }}", context(signal=signal))
    assert signal.labels == {"event": "Flood"}
