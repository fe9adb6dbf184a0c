"""The generic `json` push feed: the config maps payload fields to a signal.

`fields` in the feed's config (paths are dotted, list elements by number,
e.g. `alerts.0.id`):

    key: incident.id            # required: stable id of the upstream incident
    status: incident.state      # optional: absent means every item is firing
    resolved_values: [resolved] # optional: status values meaning resolved
                                #   (default [resolved], compared case-insensitively)
    title: incident.name        # optional: default is the key
    labels:                     # optional: {label: path}, or one path to an
      service: incident.service #   object whose scalar members become labels
    annotations: incident.notes # optional: same two forms as labels
    time: incident.updated_at   # optional: RFC 3339 time of the event
    items: incidents            # optional: path to a list; one signal per
                                #   element, other paths are then relative to it

Authentication: a bearer token (`token_*`), an HMAC-SHA256 hex digest of the
raw body in `signature_header` (default `X-Signature`, an optional `sha256=`
prefix allowed) keyed by `secret_*`, or both; when both are configured both
must pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from switchboard.feeds.auth import check_bearer, header, signature_matches, unauthorized
from switchboard.feeds.parser import FeedParser, current_time
from switchboard.feeds.payload import (
    as_list,
    load_json,
    malformed,
    parse_time,
    scalar_text,
    string_map,
)
from switchboard.feeds.severity import with_severity
from switchboard.feeds.signal import Signal

if TYPE_CHECKING:
    from switchboard.feeds.settings import FeedConfig

KIND = "json"
DEFAULT_SIGNATURE_HEADER = "X-Signature"
FIELD_KEYS = ("key", "status", "resolved_values", "title", "labels", "annotations", "time",
              "items")

Path = tuple[str, ...]
# A label set is either {name: path} or one path to an object of scalars.
LabelSource = dict[str, Path] | Path | None


@dataclass(frozen=True)
class FieldMap:
    key: Path
    status: Path | None = None
    resolved_values: frozenset[str] = frozenset({"resolved"})
    title: Path | None = None
    labels: LabelSource = None
    annotations: LabelSource = None
    time: Path | None = None
    items: Path | None = None


def field_map(fields: Mapping[str, Any]) -> FieldMap:
    """Validate a feed's `fields`; ValueError names the bad key, for `check`."""
    unknown = sorted(set(fields) - set(FIELD_KEYS))
    if unknown:
        raise ValueError(f"fields: unknown key {unknown[0]!r} (keys: {', '.join(FIELD_KEYS)})")
    if "key" not in fields:
        raise ValueError("fields: missing required key 'key' (path to the incident's id)")
    resolved = fields.get("resolved_values", ["resolved"])
    if not isinstance(resolved, list) or not all(isinstance(v, str | int) for v in resolved):
        raise ValueError("fields.resolved_values: must be a list of values")
    return FieldMap(
        key=_path(fields["key"], "key"),
        status=_optional_path(fields, "status"),
        resolved_values=frozenset(str(v).strip().lower() for v in resolved),
        title=_optional_path(fields, "title"),
        labels=_label_source(fields, "labels"),
        annotations=_label_source(fields, "annotations"),
        time=_optional_path(fields, "time"),
        items=_optional_path(fields, "items"),
    )


def _path(value: Any, where: str) -> Path:
    if not isinstance(value, str) or not all(value.split(".")):
        raise ValueError(f"fields.{where}: must be a dotted path such as 'incident.id', "
                         f"not {value!r}")
    return tuple(value.split("."))


def _optional_path(fields: Mapping[str, Any], name: str) -> Path | None:
    return _path(fields[name], name) if fields.get(name) is not None else None


def _label_source(fields: Mapping[str, Any], name: str) -> LabelSource:
    value = fields.get(name)
    if value is None or isinstance(value, str):
        return _optional_path(fields, name)
    if isinstance(value, dict):
        return {str(label): _path(path, f"{name}.{label}") for label, path in value.items()}
    raise ValueError(f"fields.{name}: must be a path or a mapping of label to path")


def lookup(document: Any, path: Path) -> Any:
    """The value at `path`, or None where the payload has no such member."""
    value = document
    for part in path:
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isascii() and part.isdigit() \
                and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


class JsonParser(FeedParser):
    kind = KIND
    push = True

    def __init__(self, config: FeedConfig) -> None:
        super().__init__(config)
        self.fields = field_map(config.fields)

    def authenticate(self, body: bytes, headers: Mapping[str, str]) -> None:
        if not self.config.token_sha256 and not self.config.secret:
            raise unauthorized(self.config.id, "no token or secret is configured, so no "
                                               "delivery is accepted")
        if self.config.token_sha256:
            check_bearer(self.config.id, headers, self.config.token_sha256)
        if self.config.secret:
            self._check_signature(body, headers, self.config.secret)

    def _check_signature(self, body: bytes, headers: Mapping[str, str], secret: str) -> None:
        name = self.config.signature_header or DEFAULT_SIGNATURE_HEADER
        given = (header(headers, name) or "").strip()
        if not given:
            raise unauthorized(self.config.id, f"missing {name} header")
        if given.lower().startswith("sha256="):
            given = given[len("sha256="):]
        if not signature_matches(secret, body, [given]):
            raise unauthorized(self.config.id, f"{name} does not match the body")

    def parse(self, body: bytes, headers: Mapping[str, str],
              now: datetime | None = None) -> list[Signal]:
        document = load_json(KIND, body)
        if self.fields.items is None:
            items, where = [document], ""
        else:
            items = as_list(KIND, lookup(document, self.fields.items),
                            ".".join(self.fields.items))
            where = ".".join(self.fields.items)
        return [self._signal(item, f"{where}[{i}]" if where else "the payload",
                             current_time(now))
                for i, item in enumerate(items)]

    def _signal(self, item: Any, what: str, now: datetime) -> Signal:
        fm = self.fields
        if not isinstance(item, dict):
            raise malformed(KIND, f"{what} must be an object")
        key = scalar_text(lookup(item, fm.key))
        if not key:
            raise malformed(KIND, f"{what} has no value at {'.'.join(fm.key)!r} (the key)")
        status_value = scalar_text(lookup(item, fm.status)) if fm.status else None
        resolved = (status_value or "").strip().lower() in fm.resolved_values
        title = scalar_text(lookup(item, fm.title)) if fm.title else None
        when = parse_time(lookup(item, fm.time)) if fm.time else None
        labels = _labels(item, fm.labels, what)
        return Signal(source=self.config.id, key=key,
                      status="resolved" if resolved else "firing",
                      title=title or key, at=when or now,
                      labels=with_severity(KIND, labels, labels.get("severity")),
                      annotations=_labels(item, fm.annotations, what))


def _labels(item: Any, source: LabelSource, what: str) -> dict[str, str]:
    if source is None:
        return {}
    if isinstance(source, dict):
        pairs = {name: scalar_text(lookup(item, path)) for name, path in source.items()}
        return {name: text for name, text in pairs.items() if text is not None}
    value = lookup(item, source)
    if value is not None and not isinstance(value, dict):
        raise malformed(KIND, f"{what}: {'.'.join(source)!r} must be an object")
    return string_map(KIND, value, ".".join(source))
