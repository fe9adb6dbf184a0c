"""`switchboard check` on the settings of the bluesky, facebook, threads, telegram and
teams channels: each mistake named as FILE:LINE:COL, secrets only from env or file."""

from __future__ import annotations

from pathlib import Path

from tests.unit.test_config_check import check

HEAD = """\
listen: 127.0.0.1:8650
state_dir: ./var
timezone: Europe/London
runbooks_dir: runbooks
max_lateness: 10m
access:
  - {name: ops-desk, role: ops, token_env: SB_CHECK_TOKEN}
channels:
"""
BOT_TOKEN = "123456789:AAHfakeTokenForTheConfigCheckOnly012"
ENV = {"SB_CHECK_TOKEN": "t", "SB_BSKY": "abcd-efgh-ijkl-mnop", "SB_FB": "EAAfake",
       "SB_THREADS": "THAAfake", "SB_TG": BOT_TOKEN,
       "SB_TEAMS": "https://prod-01.westeurope.logic.azure.com/workflows/x/triggers/manual/"
                   "paths/invoke?sig=abc"}

GOOD = HEAD + """\
  - {id: bsky, kind: bluesky, identifier: council.bsky.social, app_password_env: SB_BSKY}
  - {id: fb, kind: facebook, page_id: 104200000000001, page_token_env: SB_FB}
  - {id: threads, kind: threads, user_id: "17841400000000001", access_token_env: SB_THREADS}
  - {id: tg, kind: telegram, chat_id: "@council_updates", bot_token_env: SB_TG}
  - {id: staff, kind: teams, url_env: SB_TEAMS}
  - {id: ops-chat, kind: console, audience: internal}
  - {id: outbox, kind: outbox, path: ./var/outbox.jsonl}
"""


def test_each_new_channel_kind_passes_check_when_its_settings_are_right(tmp_path: Path) -> None:
    code, out = check(tmp_path, GOOD, ENV)
    assert code == 0, out
    assert "ok (7 channels" in out


def test_each_new_channel_kind_names_its_wrong_setting_with_file_line_and_column(
        tmp_path: Path) -> None:
    bad = HEAD + """\
  - {id: bsky, kind: bluesky, identifier: "not a handle", app_password_env: SB_BSKY}
  - {id: fb, kind: facebook, page_id: 1042abc, page_token_env: SB_FB, slow_down_at: 150}
  - {id: threads, kind: threads, user_id: 1784, access_token_env: SB_THREADS, api_version: "23"}
  - {id: tg, kind: telegram, chat_id: council, bot_token_env: SB_TG}
  - {id: staff, kind: teams, url_env: SB_TEAMS}
  - {id: b2, kind: bluesky, service: ftp://x, identifier: a.bsky.social, app_password_env: SB_BSKY}
"""
    code, out = check(tmp_path, bad, {**ENV, "SB_TG": "123:short", "SB_TEAMS": "http://x"})
    assert code == 1
    for expected in (
            "CONFIG:9:31: channels[0].identifier: must be the account's handle",
            "CONFIG:10:30: channels[1].page_id: must be the numeric id Meta shows for it",
            "CONFIG:10:71: channels[1].slow_down_at: must be a percentage, 1 to 100",
            "CONFIG:11:79: channels[2].api_version: must look like v23.0, not '23'",
            "CONFIG:12:30: channels[3].chat_id: must be the channel's @username or its "
            "numeric id",
            "CONFIG:12:48: channels[3].bot_token_env: does not hold a bot token",
            "CONFIG:13:30: channels[4].url_env: does not hold an https:// workflow URL",
            "CONFIG:14:29: channels[5].service: must be an http(s) URL, not 'ftp://x'"):
        assert expected in out, f"{expected!r} not in\n{out}"


def test_a_new_channel_kind_without_its_credential_is_refused(tmp_path: Path) -> None:
    bad = HEAD + """\
  - {id: bsky, kind: bluesky, identifier: council.bsky.social, app_password: hunter2}
  - {id: fb, kind: facebook, page_id: 1042}
  - {id: tg, kind: telegram, chat_id: "@council_updates", bot_token_env: SB_MISSING}
  - {id: staff, kind: teams}
"""
    code, out = check(tmp_path, bad, ENV)
    assert code == 1
    assert ("CONFIG:9:64: channels[0].app_password: secrets are not written in the file: use "
            "app_password_env or app_password_file") in out
    assert "CONFIG:10:5: channels[1]: missing page_token_env or page_token_file" in out
    assert "CONFIG:11:59: channels[2].bot_token_env: environment variable SB_MISSING is not " \
           "set" in out
    assert "CONFIG:12:5: channels[3]: missing url_env or url_file" in out


def test_a_teams_channel_is_internal_unless_the_file_says_otherwise(tmp_path: Path) -> None:
    from switchboard.config import load

    (tmp_path / "runbooks").mkdir()
    path = tmp_path / "switchboard.yaml"
    path.write_text(GOOD.replace("runbooks_dir: runbooks", f"runbooks_dir: {tmp_path}/runbooks"))
    config = load(path, env=ENV)
    audiences = {c.id: c.audience for c in config.channels}
    assert audiences == {"bsky": "public", "fb": "public", "threads": "public", "tg": "public",
                         "staff": "internal", "ops-chat": "internal", "outbox": "public"}
    assert config.channels[1].options["page_id"] == "104200000000001"
