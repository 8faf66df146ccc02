"""Configuration from the environment as containers give it (JSON tables, ``*_FILE`` secrets),
the log level, and the CLI's own description of itself (``--version``, help on every argument)."""
from __future__ import annotations

import argparse
import logging

import pytest

from bot.cli import _parser, main
from bot.config import ConfigError, load_config
from tests.harness import root_logging_kept

ROBOT_KEY = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"


def test_tables_come_from_the_environment_as_json():
    cfg = load_config(env={
        "ARBOT_WECOM_ROBOT_WEBHOOK_KEYS": f'{{"managers": "{ROBOT_KEY}"}}',
        "ARBOT_DINGTALK_ROBOT_WEBHOOKS": '{"managers": {"url": "https://oapi.dingtalk.com/robot/send?access_token=t",'
                                         ' "secret": "SEC1"}}',
        "ARBOT_COMPANY_FX_RATES": '{"USD": "7.10"}',
        "ARBOT_REPORTS_MANAGER_GROUPS": '["wecom:robot:managers", "local:mgmt"]',
        "ARBOT_CALENDAR_EXTRA_HOLIDAYS": "2027-01-01,2027-01-02",
    })
    assert cfg.wecom.robot_webhook_keys == {"managers": ROBOT_KEY}
    assert cfg.dingtalk.robot_webhooks["managers"]["secret"] == "SEC1"
    assert cfg.company.fx_rates == {"USD": "7.10"}
    assert cfg.reports.manager_groups == ("wecom:robot:managers", "local:mgmt")
    assert cfg.calendar.extra_holidays == ("2027-01-01", "2027-01-02")


def test_a_bad_secret_table_is_named_but_its_value_is_not_shown():
    with pytest.raises(ConfigError) as e:
        load_config(env={"ARBOT_WECOM_ROBOT_WEBHOOK_KEYS": f"managers={ROBOT_KEY}"})
    assert "ARBOT_WECOM_ROBOT_WEBHOOK_KEYS" in str(e.value) and "JSON object" in str(e.value)
    assert ROBOT_KEY not in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_config(env={"ARBOT_WECOM_ROBOT_WEBHOOK_KEYS": f'["{ROBOT_KEY}"]'})
    assert ROBOT_KEY not in str(e.value)
    with pytest.raises(ConfigError) as e:                     # not a secret: the value helps
        load_config(env={"ARBOT_COMPANY_FX_RATES": "USD=7.10"})
    assert "USD=7.10" in str(e.value)


def test_file_secrets(tmp_path):
    secret = tmp_path / "web_secret"
    secret.write_text("s3cr3t-from-a-docker-secret\n", encoding="utf-8")
    keys = tmp_path / "robots.json"
    keys.write_text(f'{{"managers": "{ROBOT_KEY}"}}', encoding="utf-8")
    cfg = load_config(env={"ARBOT_WEB_SECRET_FILE": str(secret), "ARBOT_WECOM_ROBOT_WEBHOOK_KEYS_FILE": str(keys)})
    assert cfg.web.secret == "s3cr3t-from-a-docker-secret"       # the file's newline dropped
    assert cfg.wecom.robot_webhook_keys == {"managers": ROBOT_KEY}
    with pytest.raises(ConfigError) as e:
        load_config(env={"ARBOT_WEB_SECRET_FILE": str(secret), "ARBOT_WEB_SECRET": "other"})
    assert "both set" in str(e.value) and "other" not in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_config(env={"ARBOT_WEB_SECRET_FILE": str(tmp_path / "missing")})
    assert "ARBOT_WEB_SECRET_FILE" in str(e.value) and "missing" in str(e.value)


def test_log_level_is_configured(tmp_path, capsys, monkeypatch):   # monkeypatch undone first
    assert load_config(env={"ARBOT_LOG_LEVEL": "debug"}).log.level == "debug"
    with pytest.raises(ConfigError) as e:
        load_config(env={"ARBOT_LOG_LEVEL": "LOUD"})
    assert "[log] level" in str(e.value)
    secret = tmp_path / "web_secret"
    secret.write_text("s3cr3t-from-a-docker-secret", encoding="utf-8")
    monkeypatch.delenv("ARBOT_CONFIG", raising=False)
    monkeypatch.setenv("ARBOT_DATABASE_URL", f"sqlite:///{tmp_path}/a.db")
    monkeypatch.setenv("ARBOT_WEB_SECRET_FILE", str(secret))
    monkeypatch.setenv("ARBOT_WECOM_ROBOT_WEBHOOK_KEYS", f'{{"managers": "{ROBOT_KEY}"}}')
    monkeypatch.setenv("ARBOT_LOG_LEVEL", "WARNING")
    with root_logging_kept():
        assert main(["outbox"]) == 0
    quiet = capsys.readouterr().err
    assert "Running upgrade" not in quiet                           # alembic's INFO lines
    monkeypatch.setenv("ARBOT_LOG_LEVEL", "DEBUG")
    (tmp_path / "a.db").unlink()
    with root_logging_kept() as root:
        assert main(["outbox"]) == 0
        assert root.level == logging.DEBUG
    loud = capsys.readouterr().err
    assert "Running upgrade" in loud
    assert "s3cr3t" not in loud and ROBOT_KEY not in loud


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("arbot ") and out != "arbot unknown"


def _actions(parser: argparse.ArgumentParser, path: str):
    for action in parser._actions:
        yield f"{path} {'/'.join(action.option_strings) or action.dest}", action
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _actions(sub, f"{path} {name}")


def test_every_cli_argument_has_help():
    missing = [where for where, action in _actions(_parser(), "arbot") if not action.help]
    assert missing == []
    subcommands = [where for where, a in _actions(_parser(), "arbot") if isinstance(a, argparse._SubParsersAction)]
    assert len(subcommands) >= 5                                   # the walk did reach the subcommands
