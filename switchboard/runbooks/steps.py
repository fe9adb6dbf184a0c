"""The `steps:` and `resolve:` sections of a runbook, checked."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from switchboard.runbooks.model import (
    _NAME,
    ACTIONS,
    CHANNELS_SUMMARY,
    HANDOVER_STEP,
    HELD_POLICIES,
    PUBLIC_ACTIONS,
    REMIND_TEXT,
    RESOLVE_ACTIONS,
    ResolvePolicy,
    Step,
)
from switchboard.runbooks.sections import (
    _RESOLVE_KEYS,
    _RESOLVE_STEP_KEYS,
    _STEP_KEYS,
    _merged,
    _Sections,
)
from switchboard.templates import (
    Template,
    format_duration,
)
from switchboard.yamldoc import Path_, Section


class _StepSections(_Sections):
    def _steps(self, top: Section) -> list[tuple[Step, Path_]]:
        out: list[tuple[Step, Path_]] = []
        for i, item in enumerate(top.get("steps", list, [])):
            step = self._step(("steps", i), item)
            if step is not None:
                out.append((step, ("steps", i)))
        return out

    def _step(self, path: Path_, item: Any) -> Step | None:
        sec = Section(self.doc, path, item, _STEP_KEYS, required={"name", "action"})
        if not sec.ok:
            return None
        name = self._step_name(sec, "")
        action = sec.choice("action", ACTIONS)
        at, every, start = self._timing(sec, action)
        if action is None:
            return None
        return Step(name=name, action=action, at=at, every=every, start=start,
                    template=self._step_template(sec, action, every),
                    channels=self._step_channels(sec, action),
                    published_within=self._published_within(sec, action))

    def _step_name(self, sec: Section, fallback: str) -> str:
        name = sec.get("name", str, None)
        if name is None:
            return fallback
        if not _NAME.fullmatch(name):
            self.doc.problem(sec.at("name"), f"step name {name!r} must be lower-case letters, "
                                             "digits, '.', '_' or '-'")
        return str(name)

    def _timing(self, sec: Section, action: str | None,
                ) -> tuple[timedelta | None, timedelta | None, timedelta | None]:
        if sec.has("at") and sec.has("every"):
            self.doc.problem(sec.at("every"), "give either at: (once) or every: (repeating), "
                                              "not both")
            return None, None, None
        if not sec.has("at") and not sec.has("every"):
            self.doc.problem(sec.path, "missing at: (once, offset from the declaration) or "
                                       "every: (repeating until resolution)")
            return None, None, None
        at = sec.duration("at")
        every = sec.duration("every")
        start = sec.duration("start")
        if sec.has("start") and not sec.has("every"):
            self.doc.problem(sec.at("start"), "start: is only for every: steps")
        if every is not None and every <= timedelta(0):
            self.doc.problem(sec.at("every"), "must be more than 0s")
            every = None
        if action == "remind" and sec.has("at"):
            self.doc.problem(sec.at("at"), "remind steps repeat: use every: (a reminder fires "
                                           "when no operational update went out in that interval)")
        return at, every, start

    def _step_template(self, sec: Section, action: str,
                       every: timedelta | None) -> Template | None:
        if action == "retract":
            if sec.has("template"):
                self.doc.problem(sec.at("template"), "retract steps take no template")
            return None
        source = sec.get("template", str, None)
        if source is None:
            if action in ("post", "notify"):
                if not sec.has("template"):
                    self.doc.problem(sec.path, f"missing required key 'template' "
                                               f"(a {action} step needs its text)")
                return None
            default = (REMIND_TEXT.format(window=format_duration(every or timedelta(0)))
                       if action == "remind"
                       else HANDOVER_STEP.format(role=self.role, channels=CHANNELS_SUMMARY))
            return self._compile(sec.at("template"), default, builtin=True)
        if not source.strip():
            self.doc.problem(sec.at("template"), "must not be empty")
            return None
        return self._compile(sec.at("template"), source)

    def _step_channels(self, sec: Section, action: str) -> tuple[str, ...] | None:
        if not sec.has("channels"):
            if action in PUBLIC_ACTIONS:
                return None
            if not self.handover_notify:
                self.doc.problem(sec.path, f"no channels for this {action} step: give "
                                           "channels: or handover.notify")
            return self.handover_notify
        ids = sec.str_list("channels")
        if not ids and sec.get("channels", list, None) is not None:
            self.doc.problem(sec.at("channels"), "must list at least one channel")
        audience = "public" if action in PUBLIC_ACTIONS else "internal"
        why = (f"{action} steps go to public channels" if audience == "public"
               else f"{action} steps go to internal channels")
        for i, cid in enumerate(ids):
            where = (*sec.at("channels"), i)
            if self._channel_ok(where, cid, audience, why) and audience == "public" \
                    and cid not in self.scope:
                self.doc.problem(where, f"channel {cid!r} is not in the runbook's scope "
                                        f"({', '.join(self.scope) or 'none'})")
        return _merged(ids)

    def _published_within(self, sec: Section, action: str) -> timedelta | None:
        if action != "retract":
            if sec.has("published_within"):
                self.doc.problem(sec.at("published_within"), "only retract steps take "
                                                             "published_within")
            return None
        if not sec.has("published_within"):
            self.doc.problem(sec.path, "missing required key 'published_within' (how far back "
                                       "to retract marketing posts, e.g. 30m)")
            return None
        within = sec.duration("published_within")
        if within is not None and within <= timedelta(0):
            self.doc.problem(sec.at("published_within"), "must be more than 0s")
        return within

    def _resolve(self, top: Section) -> tuple[ResolvePolicy, list[tuple[Step, Path_]]]:
        if not top.has("resolve"):
            return ResolvePolicy(), []
        sec = Section(self.doc, ("resolve",), top.value["resolve"], _RESOLVE_KEYS)
        default = ResolvePolicy()
        steps = self._resolve_steps(sec)
        policy = ResolvePolicy(
            auto=bool(sec.get("auto", bool, False)),
            quiet_period=self._non_negative(sec, "quiet_period", default.quiet_period),
            cooldown=self._non_negative(sec, "cooldown", default.cooldown),
            held_posts=sec.choice("held_posts", HELD_POLICIES, "review") or "review",
            min_spacing=self._non_negative(sec, "min_spacing", default.min_spacing),
            steps=tuple(s for s, _ in steps))
        if sec.has("min_spacing") and policy.min_spacing <= timedelta(0):
            self.doc.problem(sec.at("min_spacing"), "must be more than 0s: held posts would "
                                                    "all go out at once")
        return policy, steps

    def _non_negative(self, sec: Section, key: str, default: timedelta) -> timedelta:
        value = sec.duration(key, default)
        if value is None or value < timedelta(0):
            self.doc.problem(sec.at(key), "must not be negative")
            return default
        return value

    def _resolve_steps(self, sec: Section) -> list[tuple[Step, Path_]]:
        out: list[tuple[Step, Path_]] = []
        for i, item in enumerate(sec.get("steps", list, [])):
            path: Path_ = ("resolve", "steps", i)
            step_sec = Section(self.doc, path, item, _RESOLVE_STEP_KEYS, required={"action"})
            if not step_sec.ok:
                continue
            name = self._step_name(step_sec, f"resolve-{i + 1}")
            action = step_sec.choice("action", RESOLVE_ACTIONS)
            if action is None:
                continue
            out.append((Step(name=name, action=action, at=timedelta(0),
                             template=self._step_template(step_sec, action, None),
                             channels=self._step_channels(step_sec, action)), path))
        return out
