"""Flags and environment: defaults, fallbacks, and one clear line with exit 2 for a bad value."""

from __future__ import annotations

import subprocess
import sys

import pytest

from config import Config, parse_config
from tests.support import ROOT

EVERY_FLAG = (
    "--host",
    "--port",
    "--redis-url",
    "--database-url",
    "--access-token-secret",
    "--participant-roles",
    "--teacher-auth",
    "--user-id-claim",
    "--mixpanel-token",
    "--mixpanel-events-url",
    "--cors-allowed-origins",
    "--ping-interval",
    "--ping-timeout",
    "--max-payload",
    "--log-level",
    "--roster-ttl",
    "--max-session-output",
    "--trusted-proxies",
    "--websocket-compression",
    "--liveness-ttl",
    "--liveness-interval",
)


def test_defaults_without_flags_or_environment() -> None:
    assert parse_config([], environ={}) == Config()


def test_environment_is_the_fallback_and_flags_win() -> None:
    environ = {
        "REDIS_URL": "redis://10.0.0.1:6380/2",
        "ROLLCALL_PORT": "9000",
        "PARTICIPANT_ROLES": "student, observer",
        "ACCESS_TOKEN_SECRET": "s3cret",
        "CORS_ALLOWED_ORIGINS": "https://a.example, https://b.example",
        "ROLLCALL_PING_INTERVAL": "0.3",
    }
    config = parse_config(["--port", "9001"], environ=environ)
    assert config.port == 9001
    assert config.redis_url == "redis://10.0.0.1:6380/2"
    assert config.participant_roles == ("student", "observer")
    assert config.access_token_secret == "s3cret"
    assert config.cors_allowed_origins == ["https://a.example", "https://b.example"]
    assert config.ping_interval == 0.3


def test_teacher_auth_is_token_unless_turned_off_by_flag_or_environment() -> None:
    assert parse_config([], environ={}).teacher_auth == "token"
    assert parse_config(["--teacher-auth", "none"], environ={}).teacher_auth == "none"
    assert parse_config([], environ={"ROLLCALL_TEACHER_AUTH": "none"}).teacher_auth == "none"
    assert parse_config(
        ["--teacher-auth", "token"], environ={"ROLLCALL_TEACHER_AUTH": "none"}
    ).teacher_auth == "token"


def test_empty_optional_values_mean_off() -> None:
    config = parse_config(["--mixpanel-token", "", "--access-token-secret", ""], environ={})
    assert config.mixpanel_token is None
    assert config.access_token_secret is None
    assert config.mixpanel_events_url is None
    assert parse_config(["--cors-allowed-origins", "*"], environ={}).cors_allowed_origins == "*"


@pytest.mark.parametrize(
    ("argv", "environ", "flag"),
    [
        (["--port", "http"], {}, "--port"),
        (["--port", "70000"], {}, "--port"),
        ([], {"ROLLCALL_PORT": "0"}, "--port"),
        (["--redis-url", "localhost:6379"], {}, "--redis-url"),
        ([], {"DATABASE_URL": "mysql://x/y"}, "--database-url"),
        (["--participant-roles", "student,teacher"], {}, "--participant-roles"),
        (["--participant-roles", " , "], {}, "--participant-roles"),
        (["--participant-roles", "stu dent"], {}, "--participant-roles"),
        (["--teacher-auth", "off"], {}, "--teacher-auth"),
        ([], {"ROLLCALL_TEACHER_AUTH": "TOKEN"}, "--teacher-auth"),
        (["--mixpanel-events-url", "ftp://x"], {}, "--mixpanel-events-url"),
        (["--cors-allowed-origins", "example.com"], {}, "--cors-allowed-origins"),
        (["--ping-interval", "0"], {}, "--ping-interval"),
        (["--ping-timeout", "soon"], {}, "--ping-timeout"),
        (["--max-payload", "12.5"], {}, "--max-payload"),
        (["--max-payload", "10"], {}, "--max-payload"),
        (["--log-level", "LOUD"], {}, "--log-level"),
        (["--store-timeout", "-1"], {}, "--store-timeout"),
        (["--key-prefix", "a b"], {}, "--key-prefix"),
        (["--event-loop", "trio"], {}, "--event-loop"),
        ([], {"ROLLCALL_EVENT_LOOP": "trio"}, "--event-loop"),
        (["--liveness-ttl", "0"], {}, "--liveness-ttl"),
        ([], {"ROLLCALL_LIVENESS_TTL": "soon"}, "--liveness-ttl"),
        (["--liveness-interval", "-2"], {}, "--liveness-interval"),
        # a heartbeat no more frequent than the TTL would let a live process lapse
        (["--liveness-interval", "15"], {}, "--liveness-interval"),
        (["--liveness-ttl", "2"], {"ROLLCALL_LIVENESS_INTERVAL": "3"}, "--liveness-interval"),
        (["--no-such-flag"], {}, "--no-such-flag"),
        (["--roster-ttl", "-1"], {}, "--roster-ttl"),
        ([], {"ROLLCALL_ROSTER_TTL": "1d"}, "--roster-ttl"),
        (["--roster-ttl", "31622401"], {}, "--roster-ttl"),
        (["--max-session-output", "lots"], {}, "--max-session-output"),
        (["--max-session-output", "999999"], {}, "--max-session-output"),  # < --max-payload
        ([], {"ROLLCALL_MAX_SESSION_OUTPUT": "-1"}, "--max-session-output"),
        (["--trusted-proxies", "nginx"], {}, "--trusted-proxies"),
        ([], {"ROLLCALL_TRUSTED_PROXIES": "10.0.0.0/33"}, "--trusted-proxies"),
        (["--websocket-compression", "maybe"], {}, "--websocket-compression"),
        ([], {"ROLLCALL_WEBSOCKET_COMPRESSION": "2"}, "--websocket-compression"),
    ],
)
def test_invalid_value_exits_2_with_one_line_naming_the_flag(
    argv: list[str], environ: dict[str, str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_config(argv, environ=environ)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert flag in err


def test_session_output_defaults_to_the_engine_default_and_takes_bytes() -> None:
    assert Config().max_session_output is None  # protocol.engine sizes it from --max-payload
    assert parse_config(["--max-session-output", ""], environ={}).max_session_output is None
    config = parse_config([], environ={"ROLLCALL_MAX_SESSION_OUTPUT": "8000000"})
    assert config.max_session_output == 8_000_000


def test_trusted_proxies_default_to_loopback_and_take_addresses_and_networks() -> None:
    assert {str(n) for n in Config().trusted_proxies} == {"127.0.0.0/8", "::1/128"}
    config = parse_config(["--trusted-proxies", "10.0.0.5, 192.168.0.0/16,fd00::/8"], environ={})
    assert [str(n) for n in config.trusted_proxies] == ["10.0.0.5/32", "192.168.0.0/16", "fd00::/8"]
    assert parse_config([], environ={"ROLLCALL_TRUSTED_PROXIES": ""}).trusted_proxies == ()


def test_liveness_settings_come_from_flags_or_environment() -> None:
    environ = {"ROLLCALL_LIVENESS_TTL": "3", "ROLLCALL_LIVENESS_INTERVAL": "0.5"}
    config = parse_config(["--liveness-interval", "1"], environ=environ)
    assert (config.liveness_ttl, config.liveness_interval) == (3.0, 1.0)


def test_default_liveness_heals_a_crash_within_30_s() -> None:
    """A killed process's liveness key lapses at most a TTL after its last heartbeat, and a
    live process's next heartbeat (an interval later at most) sweeps it: the issue's bound,
    with room for the store timeout of a heartbeat that had to wait for Redis."""
    config = Config()
    assert config.liveness_ttl + config.liveness_interval + config.store_timeout < 30


def test_help_lists_every_flag_with_its_environment_variable() -> None:
    result = subprocess.run(
        [sys.executable, "server.py", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    for flag in EVERY_FLAG:
        assert flag in result.stdout
    for env in ("REDIS_URL", "DATABASE_URL", "ACCESS_TOKEN_SECRET", "MIXPANEL_TOKEN",
                "ROLLCALL_TEACHER_AUTH"):
        assert env in result.stdout


def test_server_exits_2_on_a_bad_environment_value() -> None:
    result = subprocess.run(
        [sys.executable, "server.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "ROLLCALL_PING_TIMEOUT": "never"},
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "server.py: error: argument --ping-timeout: expected a number of seconds, got 'never'"
    ]


def test_the_roster_ttl_falls_back_to_the_environment_and_zero_turns_it_off() -> None:
    assert Config().roster_ttl == 86400
    assert parse_config([], environ={"ROLLCALL_ROSTER_TTL": "3600"}).roster_ttl == 3600
    assert parse_config(["--roster-ttl", "0"], environ={}).roster_ttl == 0


def test_websocket_compression_is_off_unless_turned_on_by_flag_or_environment() -> None:
    assert parse_config([], environ={}).websocket_compression is False
    assert parse_config(["--websocket-compression"], environ={}).websocket_compression is True
    assert parse_config(
        ["--websocket-compression", "off"], environ={}
    ).websocket_compression is False
    on = {"ROLLCALL_WEBSOCKET_COMPRESSION": "true"}
    assert parse_config([], environ=on).websocket_compression is True
    assert parse_config(["--websocket-compression=0"], environ=on).websocket_compression is False
