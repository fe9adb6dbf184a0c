"""Every validation message, with the file, line, column and key it names."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchboard.runbooks import ChannelInfo, check_runbooks, load_runbooks
from switchboard.textlength import weighted_length
from switchboard.yamldoc import InvalidFile
from tests.runbooks.conftest import BASE, CHANNELS, Runbooks


def test_the_base_runbook_is_clean(books: Runbooks) -> None:
    assert books.problems(BASE) == []


def test_it_rejects_an_unknown_top_level_key(books: Runbooks) -> None:
    path = books.write(BASE + "escalation: yes\n")
    assert books.problems() == [
        f"{path}:11:1: escalation: unknown key (allowed: approval, handover, name, resolve, "
        "scope, severity, steps, suppress, title)"]


def test_it_rejects_an_unknown_approval_for_ops_updates(books: Runbooks) -> None:
    path = books.write(BASE + "approval: three-person\n")
    assert books.problems() == [
        f"{path}:11:1: approval: must be one of none, two-person, not 'three-person'"]


def test_it_rejects_an_unknown_step_key(books: Runbooks) -> None:
    path = books.write(BASE.replace("    at: 0m\n", "    at: 0m\n    when: now\n"))
    assert books.problems() == [
        f"{path}:8:5: steps[0].when: unknown key (allowed: action, at, channels, every, name, "
        "published_within, start, template)"]


def test_it_requires_the_name_to_match_the_file(books: Runbooks) -> None:
    path = books.write(BASE, name="other")
    assert books.problems() == [
        f"{path}:1:1: name: name 'rb' does not match the file name: this file must be called "
        "rb.yaml, or the name be 'other'"]


def test_it_requires_name_and_title(books: Runbooks) -> None:
    path = books.write("severity: major\n")
    assert books.problems() == [f"{path}:1:1: missing required key 'name'",
                                f"{path}:1:1: missing required key 'title'"]


def test_it_names_the_known_channels_for_an_unknown_step_channel(books: Runbooks) -> None:
    path = books.write(BASE.replace("channels: [outbox]", "channels: [outbx]"))
    assert books.problems() == [
        f"{path}:9:16: steps[0].channels[0]: no channel named 'outbx' "
        "(channels: mastodon, ops-chat, outbox, short)"]


def test_it_rejects_an_unknown_scope_channel(books: Runbooks) -> None:
    path = books.write(BASE.replace("handover:", "scope: [outbox, x-main]\nhandover:"))
    assert books.problems() == [
        f"{path}:3:17: scope[1]: no channel named 'x-main' "
        "(channels: mastodon, ops-chat, outbox, short)"]


def test_it_rejects_an_unknown_handover_channel(books: Runbooks) -> None:
    path = books.write(BASE.replace("notify: [ops-chat]", "notify: [duty-manager]"))
    assert books.problems() == [
        f"{path}:4:12: handover.notify[0]: no channel named 'duty-manager' "
        "(channels: mastodon, ops-chat, outbox, short)"]


@pytest.mark.parametrize(("new", "where"), [
    ("at: 10", "7:5: steps[0].at: bad duration 10"),
    ("at: soon", "7:5: steps[0].at: bad duration 'soon'"),
    ("every: 30 minutes", "7:5: steps[0].every: bad duration '30 minutes'"),
])
def test_it_rejects_a_bad_step_duration(books: Runbooks, new: str, where: str) -> None:
    path = books.write(BASE.replace("at: 0m", new))
    assert books.problems() == [
        f"{path}:{where} (use a number with s, m, h or d, e.g. '30s', '10m')"]


def test_it_rejects_a_bad_resolve_duration(books: Runbooks) -> None:
    path = books.write(BASE + "resolve:\n  cooldown: 2 hours\n")
    assert books.problems() == [
        f"{path}:12:3: resolve.cooldown: bad duration '2 hours' (use a number with s, m, h "
        "or d, e.g. '30s', '10m')"]


def test_it_lists_the_actions_for_an_unknown_action(books: Runbooks) -> None:
    path = books.write(BASE.replace("action: post", "action: tweet"))
    assert books.problems() == [
        f"{path}:8:5: steps[0].action: must be one of post, notify, remind, retract, "
        "handover, not 'tweet'"]


def test_it_rejects_a_step_with_both_at_and_every(books: Runbooks) -> None:
    path = books.write(BASE.replace("    at: 0m\n", "    at: 0m\n    every: 30m\n"))
    assert books.problems() == [
        f"{path}:8:5: steps[0].every: give either at: (once) or every: (repeating), not both"]


def test_it_rejects_a_step_with_neither_at_nor_every(books: Runbooks) -> None:
    path = books.write(BASE.replace("    at: 0m\n", ""))
    assert books.problems() == [
        f"{path}:6:5: steps[0]: missing at: (once, offset from the declaration) or every: "
        "(repeating until resolution)"]


def test_it_rejects_a_zero_interval(books: Runbooks) -> None:
    path = books.write(BASE.replace("at: 0m", "every: 0s"))
    assert books.problems() == [f"{path}:7:5: steps[0].every: must be more than 0s"]


def test_it_rejects_start_without_every(books: Runbooks) -> None:
    path = books.write(BASE.replace("    at: 0m\n", "    at: 0m\n    start: 5m\n"))
    assert books.problems() == [f"{path}:8:5: steps[0].start: start: is only for every: steps"]


@pytest.mark.parametrize("action", ["post", "notify"])
def test_it_requires_a_template_for_post_and_notify(books: Runbooks, action: str) -> None:
    text = BASE.replace("action: post", f"action: {action}")
    text = text.replace("channels: [outbox]", "channels: [ops-chat]" if action == "notify"
                        else "channels: [outbox]")
    path = books.write(text.replace('    template: "We know: {{ incident.title }}"\n', ""))
    assert books.problems() == [
        f"{path}:6:5: steps[0]: missing required key 'template' (a {action} step needs its "
        "text)"]


def test_it_rejects_duplicate_step_names(books: Runbooks) -> None:
    path = books.write(BASE + """\
  - name: hold
    every: 30m
    action: remind
""")
    assert books.problems() == [
        f"{path}:11:5: steps[1].name: duplicate step name 'hold' (first at line 6)"]


def test_step_names_are_unique_across_resolve_steps(books: Runbooks) -> None:
    path = books.write(BASE + """\
resolve:
  steps:
    - name: hold
      action: post
      template: all clear
""")
    assert books.problems() == [
        f"{path}:13:7: resolve.steps[0].name: duplicate step name 'hold' (first at line 6)"]


def test_it_reports_a_template_syntax_error_at_its_own_line(books: Runbooks) -> None:
    path = books.write(BASE.replace('template: "We know: {{ incident.title }}"', """\
template: |
      We know.
      Next update {% if %} soon.
"""))
    assert books.problems() == [
        f"{path}:12:7: steps[0].template: template syntax error: Expected an expression, got "
        "'end of statement block'"]


def test_it_reports_a_syntax_error_in_a_one_line_template_at_the_value(books: Runbooks) -> None:
    path = books.write(BASE.replace("{{ incident.title }}", "{{ incident.title }"))
    [problem] = books.problems()
    assert problem.startswith(f"{path}:10:15: steps[0].template: template syntax error: ")


def test_it_reports_an_undefined_variable(books: Runbooks) -> None:
    path = books.write(BASE.replace('template: "We know: {{ incident.title }}"', """\
template: |
      We know.
      {{ incident.title }} since {{ started | time }}.
"""))
    assert books.problems() == [
        f"{path}:12:7: steps[0].template: undefined: 'started' is undefined "
        "(sample incident declared by hand, so signal is empty)"]


def test_it_reports_an_undefined_attribute(books: Runbooks) -> None:
    path = books.write(BASE.replace("incident.title", "incident.headline"))
    assert books.problems() == [
        f"{path}:10:15: steps[0].template: undefined: 'incident' has no attribute 'headline' "
        "(sample incident declared by hand, so signal is empty)"]


def test_it_rejects_a_signal_label_read_without_a_guard(books: Runbooks) -> None:
    path = books.write(BASE.replace("incident.title", "signal.labels.event"))
    assert books.problems() == [
        f"{path}:10:15: steps[0].template: undefined: 'dict object' has no attribute 'event' "
        "(sample incident declared by hand, so signal is empty)"]


def test_it_accepts_signal_fields_read_safely(books: Runbooks) -> None:
    text = BASE.replace("incident.title", "signal.get('event', 'Warning') }} {{ signal.title")
    text += """\
  - name: area
    at: 0m
    action: notify
    template: "{% if signal %}{{ signal.labels.areaDesc }}{% else %}by hand{% endif %}"
"""
    assert books.problems(text) == []


def test_it_reports_a_sandbox_escape_in_a_template(books: Runbooks) -> None:
    path = books.write(BASE.replace("incident.title", "incident.__class__"))
    assert books.problems() == [
        f"{path}:10:15: steps[0].template: not allowed in a template: access to attribute "
        "'__class__' of 'IncidentView' object is unsafe. "
        "(sample incident declared by hand, so signal is empty)"]


def test_it_names_the_channel_a_post_is_too_long_for(books: Runbooks) -> None:
    text = BASE.replace("handover:", "scope: [outbox, mastodon, short]\nhandover:")
    text = text.replace("channels: [outbox]", "channels: [mastodon, short, outbox]")
    path = books.write(text.replace("We know:", "x" * 120))
    assert books.problems() == [
        f"{path}:11:5: steps[0].template: the sample text is 134 characters, over the 100 "
        "allowed on channel 'short'"]


def test_a_default_post_is_measured_against_the_scope(books: Runbooks) -> None:
    text = BASE.replace("    channels: [outbox]\n", "").replace("We know:", "y" * 270)
    path = books.write(text)
    assert books.problems() == [
        f"{path}:9:5: steps[0].template: the sample text is 284 characters, over the 100 "
        "allowed on channel 'short'"]


def test_it_rejects_a_notify_to_a_public_channel(books: Runbooks) -> None:
    text = BASE.replace("action: post", "action: notify")
    path = books.write(text)
    assert books.problems() == [
        f"{path}:9:16: steps[0].channels[0]: channel 'outbox' is public: notify steps go to "
        "internal channels"]


def test_it_rejects_a_post_to_an_internal_channel(books: Runbooks) -> None:
    path = books.write(BASE.replace("channels: [outbox]", "channels: [ops-chat]"))
    assert books.problems() == [
        f"{path}:9:16: steps[0].channels[0]: channel 'ops-chat' is internal: post steps go "
        "to public channels"]


def test_it_rejects_a_post_outside_the_scope(books: Runbooks) -> None:
    path = books.write(BASE.replace("handover:", "scope: [mastodon]\nhandover:"))
    assert books.problems() == [
        f"{path}:10:16: steps[0].channels[0]: channel 'outbox' is not in the runbook's scope "
        "(mastodon)"]


def test_it_rejects_an_internal_channel_in_the_scope(books: Runbooks) -> None:
    path = books.write(BASE.replace("handover:", "scope: [outbox, ops-chat]\nhandover:"))
    assert books.problems() == [
        f"{path}:3:17: scope[1]: channel 'ops-chat' is internal: the scope lists the public "
        "channels an incident takes over"]


def test_it_rejects_a_scope_that_is_neither_all_nor_a_list(books: Runbooks) -> None:
    path = books.write(BASE.replace("handover:", "scope: everything\nhandover:"))
    assert books.problems() == [f"{path}:3:1: scope: must be 'all' or a list of channel ids"]


def test_it_rejects_a_public_handover_channel(books: Runbooks) -> None:
    path = books.write(BASE.replace("notify: [ops-chat]", "notify: [ops-chat, outbox]"))
    assert books.problems() == [
        f"{path}:4:22: handover.notify[1]: channel 'outbox' is public: handover notices go to "
        "internal channels"]


def test_it_needs_somewhere_to_send_a_reminder(books: Runbooks) -> None:
    text = BASE.replace("handover:\n  notify: [ops-chat]\n", "") + """\
  - name: update-due
    every: 30m
    action: remind
"""
    path = books.write(text)
    assert books.problems() == [
        f"{path}:9:5: steps[1]: no channels for this remind step: give channels: or "
        "handover.notify"]


def test_it_rejects_a_reminder_at_a_fixed_time(books: Runbooks) -> None:
    path = books.write(BASE + "  - name: due\n    at: 30m\n    action: remind\n")
    assert books.problems() == [
        f"{path}:12:5: steps[1].at: remind steps repeat: use every: (a reminder fires when no "
        "operational update went out in that interval)"]


def test_it_requires_published_within_for_retract(books: Runbooks) -> None:
    path = books.write(BASE + "  - name: retract\n    at: 0m\n    action: retract\n")
    assert books.problems() == [
        f"{path}:11:5: steps[1]: missing required key 'published_within' (how far back to "
        "retract marketing posts, e.g. 30m)"]


def test_it_rejects_published_within_on_other_actions(books: Runbooks) -> None:
    path = books.write(BASE + "    published_within: 30m\n")
    assert books.problems() == [
        f"{path}:11:5: steps[0].published_within: only retract steps take published_within"]


def test_it_rejects_a_template_on_retract(books: Runbooks) -> None:
    path = books.write(BASE + """\
  - name: retract
    at: 0m
    action: retract
    published_within: 30m
    template: gone
""")
    assert books.problems() == [f"{path}:15:5: steps[1].template: retract steps take no template"]


def test_it_rejects_an_unknown_severity(books: Runbooks) -> None:
    path = books.write(BASE.replace("handover:", "severity: huge\nhandover:"))
    assert books.problems() == [
        f"{path}:3:1: severity: must be one of minor, major, critical, not 'huge'"]


def test_it_refuses_to_suppress_operational_posts(books: Runbooks) -> None:
    path = books.write(BASE.replace("handover:", "suppress: [marketing, operational]\n"
                                                 "handover:"))
    assert books.problems() == [
        f"{path}:3:23: suppress[1]: operational posts cannot be suppressed: they are how ops "
        "talk during the incident"]


def test_it_rejects_an_unknown_post_kind_to_suppress(books: Runbooks) -> None:
    path = books.write(BASE.replace("handover:", "suppress: [promo]\nhandover:"))
    assert books.problems() == [
        f"{path}:3:12: suppress[0]: unknown post kind 'promo' (kinds: marketing, operational)"]


def test_it_rejects_an_unknown_held_posts_policy(books: Runbooks) -> None:
    path = books.write(BASE + "resolve:\n  held_posts: flush\n")
    assert books.problems() == [
        f"{path}:12:3: resolve.held_posts: must be one of review, drop, reschedule, "
        "not 'flush'"]


def test_it_rejects_a_zero_min_spacing(books: Runbooks) -> None:
    path = books.write(BASE + "resolve:\n  held_posts: reschedule\n  min_spacing: 0s\n")
    assert books.problems() == [
        f"{path}:13:3: resolve.min_spacing: must be more than 0s: held posts would all go out "
        "at once"]


def test_it_lists_the_actions_allowed_on_resolution(books: Runbooks) -> None:
    path = books.write(BASE + "resolve:\n  steps:\n    - action: remind\n")
    assert books.problems() == [
        f"{path}:13:7: resolve.steps[0].action: must be one of post, notify, not 'remind'"]


def test_it_rejects_an_unknown_resolve_key(books: Runbooks) -> None:
    path = books.write(BASE + "resolve:\n  cool_down: 1h\n")
    [problem] = books.problems()
    assert problem.startswith(f"{path}:12:3: resolve.cool_down: unknown key (allowed: auto, ")


def test_it_reports_invalid_yaml_with_its_position(books: Runbooks) -> None:
    path = books.write("name: rb\ntitle: [unclosed\n")
    [problem] = books.problems()
    assert problem.startswith(f"{path}:3:1: invalid YAML: ")


def test_it_rejects_an_empty_file(books: Runbooks) -> None:
    path = books.write("")
    assert books.problems() == [f"{path}:1:1: must be a mapping, not empty"]


def test_it_reports_an_empty_directory(books: Runbooks) -> None:
    assert books.problems() == [
        f"{books.dir}:1:1: no runbooks (*.yaml) in the runbook directory"]


def test_it_reports_a_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(InvalidFile) as caught:
        load_runbooks(missing, CHANNELS)
    assert [str(p) for p in caught.value.problems] == [
        f"{missing}:1:1: runbook directory does not exist"]


def test_it_points_out_a_yml_file(books: Runbooks) -> None:
    books.write(BASE)
    stray = books.dir / "other.yml"
    stray.write_text(BASE, encoding="utf-8")
    assert books.problems() == [f"{stray}:1:1: runbook files end in .yaml: rename to other.yaml"]


def test_it_reports_the_problems_of_every_file_at_once(books: Runbooks) -> None:
    first = books.write(BASE.replace("action: post", "action: tweet"), name="rb")
    second = books.write(BASE.replace("name: rb", "name: two").replace("at: 0m", "at: x"),
                         name="two")
    books.write(BASE.replace("name: rb", "name: fine"), name="fine")
    with pytest.raises(InvalidFile) as caught:
        load_runbooks(books.dir, CHANNELS)
    files = [p.file for p in caught.value.problems]
    assert files == [str(first), str(second)]
    assert str(caught.value).count("\n") == 1


def test_it_reports_a_failure_only_seen_with_a_signal(books: Runbooks) -> None:
    path = books.write(BASE.replace("{{ incident.title }}",
                                    "{% if signal %}{{ signal.title.headline }}{% endif %}"))
    assert books.problems() == [
        f"{path}:10:15: steps[0].template: undefined: 'str object' has no attribute 'headline' "
        "(sample incident declared by a feed signal)"]


# -- a channel named twice is one channel (design §7.1) ------------------------------

def test_a_channel_listed_twice_in_the_scope_is_held_once(books: Runbooks) -> None:
    runbook = books.load(BASE.replace("handover:", "scope: [outbox, mastodon, outbox]\n"
                                                   "handover:"))
    assert runbook.scope == ("outbox", "mastodon")
    assert runbook.public_channels(CHANNELS) == ("outbox", "mastodon")


def test_a_channel_listed_twice_in_a_step_is_posted_to_once(books: Runbooks) -> None:
    runbook = books.load(BASE.replace("channels: [outbox]", "channels: [outbox, outbox]"))
    assert runbook.steps[0].channels == ("outbox",)


def test_a_channel_listed_twice_in_handover_notify_is_told_once(books: Runbooks) -> None:
    runbook = books.load(BASE.replace("notify: [ops-chat]", "notify: [ops-chat, ops-chat]"))
    assert runbook.handover.notify == ("ops-chat",)


def test_it_rejects_a_lone_surrogate_in_a_template(books: Runbooks) -> None:
    path = books.write(BASE.replace('"We know: {{ incident.title }}"',
                                    '"We know \\ud83d: {{ incident.title }}"'))
    assert books.problems() == [
        f"{path}:10:15: steps[0].template: is not valid Unicode text: it holds a lone "
        "surrogate (\\ud83d at character 9) (write characters beyond U+FFFF as \\UXXXXXXXX)"]


def test_it_rejects_a_runbook_that_is_not_utf8(books: Runbooks) -> None:
    path = books.dir / "rb.yaml"
    path.write_bytes(BASE.replace("Test incident", "Test incident \x00").encode()
                     .replace(b"\x00", b"\xff"))
    assert books.problems() == [f"{path}:2:1: not UTF-8 text (byte 0xff)"]


def test_a_post_for_x_is_measured_as_x_weighs_it(tmp_path: Path) -> None:
    """141 CJK characters are 282 on X: over its 280, though only 141 characters."""
    channels = {**CHANNELS, "x-main": ChannelInfo("x-main", "public", 280, weighted_length)}
    books = Runbooks(tmp_path)
    text = BASE.replace("channels: [outbox]", "channels: [x-main]")
    path = books.write(text.replace('"We know: {{ incident.title }}"', '"' + "運" * 141 + '"'))
    assert [str(p) for p in check_runbooks(books.dir, channels)] == [
        f"{path}:10:5: steps[0].template: the sample text is 282 characters, over the 280 "
        "allowed on channel 'x-main'"]
    books.write(text.replace('"We know: {{ incident.title }}"', '"' + "運" * 140 + '"'))
    assert check_runbooks(books.dir, channels) == []
