"""Runbook text templates: Jinja2 in a sandbox, with strict undefined variables.

Templates are written by ops staff and rendered while an incident is running,
so everything that can go wrong is found at load time: syntax errors when the
template is compiled, undefined names by a test render against a sample
incident (`runbooks.py`). At run time a failure is a `TemplateFailure` that the
caller records on the incident's timeline; it never stops the incident.

What a template sees:
- `incident`: id, title, severity, runbook, declared_at, channels, reason, source
- `signal`: the feed signal that declared the incident; for an incident
  declared by hand it is an empty signal (false in `{% if signal %}`, blank
  fields, no labels), so `signal.title` or `signal.get('event', 'x')` never fail
- `now` (aware datetime), `channel` (the target channel id)
- `duration('30m')` -> timedelta; filters `time` (HH:MM local), `datetime`
  (YYYY-MM-DD HH:MM TZ local) and `duration` (timedelta -> '1h 30m').
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from types import TracebackType
from typing import Any

import jinja2
from jinja2 import StrictUndefined
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from switchboard.feeds.signal import Signal
from switchboard.yamldoc import parse_duration

# Tracebacks through compiled templates carry this file name; it is how the
# template line of a run-time error is found.
_FILENAME = "<template>"


class TemplateFailure(Exception):
    """A template that cannot be compiled or rendered; `line` is the template's line."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


@dataclass(frozen=True)
class IncidentView:
    """The incident as templates see it."""

    id: str
    title: str
    severity: str
    runbook: str
    declared_at: datetime
    channels: tuple[str, ...] = ()
    reason: str = ""
    source: str = "manual"


@dataclass(frozen=True)
class SignalView:
    """The declaring signal as templates see it; empty (and false) for manual incidents."""

    source: str = ""
    key: str = ""
    status: str = ""
    title: str = ""
    at: datetime | None = None
    # Plain dicts so error messages read "'dict object' has no attribute ...";
    # the immutable sandbox stops templates from changing them.
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.source or self.key)

    def get(self, name: str, default: str = "") -> str:
        """A label, else an annotation, else `default`: safe whoever declared the incident."""
        # Indexing (not `in`) so the load-time sample signal can answer any name.
        for source in (self.labels, self.annotations):
            try:
                return source[name]
            except KeyError:
                continue
        return default

    @classmethod
    def of(cls, signal: Signal | None) -> SignalView:
        if signal is None:
            return cls()
        return cls(source=signal.source, key=signal.key, status=signal.status,
                   title=signal.title, at=signal.at,
                   labels=dict(signal.labels), annotations=dict(signal.annotations))


NO_SIGNAL = SignalView()


@dataclass(frozen=True)
class Context:
    """Everything one render needs."""

    incident: IncidentView
    now: datetime
    signal: SignalView = NO_SIGNAL
    channel: str = ""

    def variables(self) -> dict[str, Any]:
        return {"incident": self.incident, "signal": self.signal, "now": self.now,
                "channel": self.channel}


@dataclass(frozen=True)
class Template:
    """One compiled template; `render` is the only thing callers need."""

    source: str
    compiled: jinja2.Template = field(compare=False, repr=False)

    def render(self, context: Context) -> str:
        """The text, stripped of surrounding whitespace; raises TemplateFailure."""
        try:
            return self.compiled.render(context.variables()).strip()
        except SecurityError as exc:
            raise TemplateFailure(f"not allowed in a template: {exc}", _template_line(exc)) \
                from exc
        except jinja2.UndefinedError as exc:
            raise TemplateFailure(f"undefined: {_plain(str(exc))}", _template_line(exc)) from exc
        except jinja2.TemplateError as exc:
            raise TemplateFailure(f"template error: {exc}", _template_line(exc)) from exc
        except Exception as exc:  # a filter or method raised: still the template's fault
            raise TemplateFailure(f"template error: {type(exc).__name__}: {exc}",
                                  _template_line(exc)) from exc


class Templates:
    """Compiles templates for one timezone (the filters `time`/`datetime` use it)."""

    def __init__(self, timezone: tzinfo = UTC) -> None:
        self.timezone = timezone
        env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
        env.globals["duration"] = _duration
        env.filters["time"] = self._time
        env.filters["datetime"] = self._datetime
        env.filters["duration"] = format_duration
        self._env = env

    def compile(self, source: str) -> Template:
        try:
            code = self._env.compile(source, filename=_FILENAME)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateFailure(f"template syntax error: {exc.message}", exc.lineno) from exc
        compiled = self._env.template_class.from_code(self._env, code, self._env.make_globals(None))
        return Template(source, compiled)

    def render(self, source: str, context: Context) -> str:
        return self.compile(source).render(context)

    def _local(self, value: object) -> datetime:
        _defined(value)
        if not isinstance(value, datetime):
            raise TypeError(f"expected a date and time, not {type(value).__name__}")
        # A naive time can only come from a bug upstream; UTC is the safe reading.
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return aware.astimezone(self.timezone)

    def _time(self, value: object) -> str:
        return self._local(value).strftime("%H:%M")

    def _datetime(self, value: object) -> str:
        return self._local(value).strftime("%Y-%m-%d %H:%M %Z")


def render(source: str, context: Context, timezone: tzinfo = UTC) -> str:
    """Compile and render once (tests, one-off texts); raises TemplateFailure."""
    return Templates(timezone).render(source, context)


def _duration(value: str) -> timedelta:
    return parse_duration(value)


def format_duration(value: object) -> str:
    """timedelta -> '1h 30m', '45s', '2d 3h'; zero is '0m'."""
    _defined(value)
    if not isinstance(value, timedelta):
        raise TypeError(f"expected a duration, not {type(value).__name__}")
    total = int(value.total_seconds())
    sign, total = ("-", -total) if total < 0 else ("", total)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m"),
                                          (seconds, "s")) if n]
    return sign + (" ".join(parts) or "0m")


def _defined(value: object) -> None:
    # Jinja hands undefined values to filters; fail as if they had been printed.
    if isinstance(value, jinja2.Undefined):
        value._fail_with_undefined_error()


def _plain(message: str) -> str:
    # "'switchboard.templates.IncidentView object' has no attribute" -> "'incident' has ..."
    for view, name in ((IncidentView, "incident"), (SignalView, "signal")):
        message = message.replace(f"{view.__module__}.{view.__name__} object", name)
    return message


def _template_line(exc: BaseException) -> int | None:
    # Jinja rewrites tracebacks so frames of the template carry template lines.
    line = None
    tb: TracebackType | None = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


__all__ = ["NO_SIGNAL", "Context", "IncidentView", "SignalView", "Template", "TemplateFailure",
           "Templates", "format_duration", "render"]
