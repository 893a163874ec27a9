"""The settings are declared once (service/settings.py): every one is a ServiceConfig field, a
``c.AbacoApp`` trait and an ``abaco-nb serve`` flag, with the same default, and each way of giving it
reaches the ServiceConfig."""

from __future__ import annotations

import argparse
from dataclasses import fields

import pytest

from server_ext.app import AbacoApp
from server_ext.cli import build_parser
from server_ext.service.settings import ServiceConfig, from_values, settings


def _serve_flags() -> dict[str, argparse.Action]:
    serve = build_parser()._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    return {action.dest: action for action in serve._actions}


def test_every_setting_is_a_field_a_trait_and_a_flag() -> None:
    names = [s.name for s in settings()]
    assert {"cron_interval", "executor_idle_seconds", "sync_timeout", "allow_privileged"} <= set(names)
    not_settings = {
        "username",
        "run_dir_is_temporary",
        "multi_user",
        "privileged_users",
    }  # serve --users/--hub
    assert set(names) == {f.name for f in fields(ServiceConfig)} - not_settings
    traits = AbacoApp.class_traits(config=True)
    flags = _serve_flags()
    defaults = ServiceConfig()
    for spec in settings():
        assert spec.name in traits, f"{spec.name} is not a c.AbacoApp trait"
        assert spec.name in flags, f"{spec.name} is not an abaco-nb serve flag"
        expected = "" if spec.computed else getattr(defaults, spec.name)
        assert traits[spec.name].default_value == expected, spec.name
        assert traits[spec.name].help == spec.help


def test_flags_reach_the_config_and_absent_ones_keep_the_default() -> None:
    parse = build_parser().parse_args
    argv = [
        "serve", "--db", "/tmp/x.db", "--mem-limit", "-1", "--cpus", "0.5", "--cron-interval", "2",
        "--sync-timeout", "7", "--container-network", "--executor-idle-seconds", "9",
    ]  # fmt: skip
    args = parse(argv)
    given = {s.name: getattr(args, s.name) for s in settings() if hasattr(args, s.name)}
    config = from_values(given)
    assert (config.db_path, config.default_mem_limit, config.default_max_cpus) == (
        "/tmp/x.db",
        None,
        500_000_000,
    )
    assert (config.cron_interval, config.sync_timeout, config.executor_idle_seconds) == (2.0, 7.0, 9.0)
    assert config.container_network is True
    untouched = from_values(
        {
            s.name: getattr(parse(["serve"]), s.name, None)
            for s in settings()
            if hasattr(parse(["serve"]), s.name)
        }
    )
    assert untouched == ServiceConfig()


def test_traits_reach_the_config() -> None:
    app = AbacoApp()
    app.cron_interval = 3.0
    app.worker_idle_seconds = 5.0
    app.default_mem_limit = None
    config = app.service_config()
    assert (config.cron_interval, config.worker_idle_seconds, config.default_mem_limit) == (3.0, 5.0, None)
    assert config.db_path == ServiceConfig().db_path  # empty trait: the computed default


@pytest.mark.parametrize("flag", ["--cpus", "--max-run-time"])
def test_a_bad_flag_value_is_refused_by_the_parser(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", flag, "lots"])
    assert flag in capsys.readouterr().err
