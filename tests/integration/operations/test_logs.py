"""The text and JSON log formats, the --log-format and --admin-token flags, and redaction."""

from __future__ import annotations

import io
import json
import logging
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

import logs
from config import configure_logging, parse_config
from tests.support import ROOT, TEST_TOKEN_SECRET, free_port

JOIN_FIELDS = {
    "event": "join",
    "sid": "abc123",
    "role": "student",
    "lesson_id": "lesson 1",
    "outcome": "SUCCESS",
    "duration_ms": 3.25,
}
SECRET = "s3cr3t-value-0123456789"
SERVER_EXIT_TIMEOUT = 15


def record(message: str = "join_lesson", args: tuple = (), **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("handlers.join_lesson", logging.INFO, __file__, 1, message, args, None)
    rec.__dict__.update(extra)
    return rec


def test_text_line_is_readable_and_carries_the_event_fields_in_order() -> None:
    line = logs.TextFormatter().format(record(**JOIN_FIELDS))
    assert " INFO handlers.join_lesson: join_lesson " in line
    assert line.endswith(
        'event=join sid=abc123 role=student lesson_id="lesson 1" outcome=SUCCESS duration_ms=3.25'
    )


FORGED_LINE = "2026-11-27 10:00:00,000 INFO handlers.join_lesson: join_lesson outcome=SUCCESS"


def test_each_set_of_extras_gets_its_own_fields_order_and_masking() -> None:
    # The order and masking are worked out once per set of names: records with other names,
    # or the same names with other values, must not get another record's.
    plain = logs.extra_fields(record(**JOIN_FIELDS))
    with_reason = logs.extra_fields(record(**JOIN_FIELDS, reason="gone", zeta=1, alpha=2))
    secret = logs.extra_fields(record(event="x", api_token=SECRET, _private="hidden"))
    again = logs.extra_fields(record(**{**JOIN_FIELDS, "sid": "other"}))
    assert list(plain) == list(JOIN_FIELDS)
    assert list(with_reason) == [
        "event", "sid", "role", "lesson_id", "outcome", "reason", "duration_ms", "alpha", "zeta"
    ]
    assert secret == {"event": "x", "api_token": logs.REDACTED}
    assert again["sid"] == "other" and plain["sid"] == "abc123"


def test_text_values_from_clients_cannot_forge_a_line_or_drive_the_terminal() -> None:
    line = logs.TextFormatter().format(record(
        user_id=f"u1\n{FORGED_LINE}", lesson_id="l1\x1b[2J\x1b[31m", sid="abc"
    ))
    assert "\n" not in line
    assert "\x1b" not in line
    assert 'user_id="u1\\n2026-11-27 ' in line
    assert 'lesson_id="l1\\x1b[2J\\x1b[31m"' in line
    assert " sid=abc " in line


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("a\rb", '"a\\rb"'),
        ("a\tb", '"a\\tb"'),
        ("a\x00b", '"a\\x00b"'),
        ("a\x7fb", '"a\\x7fb"'),
        ("a\x85b", '"a\\x85b"'),  # NEL, a line break to some readers
        ("a\u2028b", '"a\\u2028b"'),
        ("a\u202eb", '"a\\u202eb"'),  # right-to-left override
        ("a\\nb", '"a\\\\nb"'),  # a backslash is doubled: no escape can be faked
        ('say "hi"', '"say \\"hi\\""'),
        ("é-ü", "é-ü"),
    ],
)
def test_text_values_are_escaped_and_quoted(value: str, shown: str) -> None:
    line = logs.TextFormatter().format(record(lesson_id=value))
    assert line.endswith(f" lesson_id={shown}")


def test_text_message_arguments_are_escaped_too() -> None:
    line = logs.TextFormatter().format(record("closing %s: %s", ("s1", f"/ns\n{FORGED_LINE}")))
    assert "\n" not in line
    assert line.endswith("closing s1: /ns\\n" + FORGED_LINE)


def test_a_traceback_keeps_its_lines_but_not_the_controls_inside_them() -> None:
    try:
        raise ValueError(f"bad id u1\x1b[2J\r{FORGED_LINE}")
    except ValueError:
        rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    lines = logs.TextFormatter().format(rec).split("\n")
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1] == f"ValueError: bad id u1\\x1b[2J\\r{FORGED_LINE}"
    assert not any("\x1b" in line or "\r" in line for line in lines)


def test_json_line_is_one_object_with_the_extras() -> None:
    line = logs.JsonFormatter().format(record("joined %s", ("abc123",), **JOIN_FIELDS))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "joined abc123"
    assert entry["level"] == "INFO"
    assert entry["logger"] == "handlers.join_lesson"
    assert entry["ts"].endswith("+00:00")
    assert {key: entry[key] for key in JOIN_FIELDS} == JOIN_FIELDS


def test_json_line_keeps_the_traceback_on_one_line() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    entry = json.loads(logs.JsonFormatter().format(rec))
    assert "RuntimeError: boom" in entry["exc_info"]


@pytest.mark.parametrize("formatter", [logs.TextFormatter(), logs.JsonFormatter()])
def test_no_token_or_secret_is_ever_printed(formatter: logging.Formatter) -> None:
    line = formatter.format(record(
        "GET /lessons/l1/view?token=%s&x=1 and /socket.io/?access_token=%s",
        (SECRET, SECRET),
        access_token=SECRET,
        admin_token=SECRET,
        Authorization=f"Bearer {SECRET}",
        sid="abc",
    ))
    assert SECRET not in line
    assert logs.REDACTED in line
    assert "abc" in line


# What redact() masked before it was made linear (one regex, quadratic in a long word): the
# reference its results must equal.
REFERENCE_SECRET_PARAM = re.compile(
    r"(?P<name>[\w-]*(?:token|secret|password|passwd)[\w-]*)=(?P<value>[^&\s\"']+)",
    re.IGNORECASE,
)
# Pieces that make up names, values and separators, including the letters IGNORECASE folds.
REDACT_PIECES = st.sampled_from(
    ["token", "Secret", "passwd", "PASSWORD", "\u017fecret", "to\u212aen", "x", "-", "_", "=", "&",
     " ", "'", '"', "?", "/", "\u00e9", "1"]
)


@given(st.lists(REDACT_PIECES, max_size=24).map("".join))
def test_redact_masks_exactly_what_the_reference_pattern_masks(text: str) -> None:
    expected = REFERENCE_SECRET_PARAM.sub(lambda m: f"{m['name']}={logs.REDACTED}", text)
    assert logs.redact(text) == expected


def test_redact_is_linear_in_a_long_word() -> None:
    """A URL of one long run of word characters used to cost the square of its length."""
    text = "access_" + "token" * 20_000 + "&token=" + SECRET
    assert logs.redact(text).endswith(f"&token={logs.REDACTED}")


def test_text_time_is_what_logging_prints_across_seconds() -> None:
    """The text format keeps the last second's text; it must still match logging's own."""
    formatter, reference = logs.TextFormatter(), logging.Formatter(logs.TEXT_FORMAT)
    for created in (1_800_000_000.001, 1_800_000_000.999, 1_800_000_001.5, 1_799_999_999.25):
        rec = record("m")
        rec.created, rec.msecs = created, int((created - int(created)) * 1000) + 0.0
        assert formatter.format(rec).startswith(reference.format(rec))


def test_json_time_is_the_records_millisecond_in_utc_across_seconds() -> None:
    """The JSON format keeps the last second's text too; its time must be the record's own."""
    formatter = logs.JsonFormatter()
    for created in (1_800_000_000.001, 1_800_000_000.999, 1_800_000_001.5, 1_799_999_999.25):
        rec = record("m")
        rec.created, rec.msecs = created, int((created - int(created)) * 1000) + 0.0
        ts = datetime.fromisoformat(json.loads(formatter.format(rec))["ts"])
        assert ts.utcoffset() == timedelta(0)
        assert ts == datetime.fromtimestamp(int(created), UTC) + timedelta(milliseconds=rec.msecs)


def test_a_non_json_value_is_printed_as_text() -> None:
    entry = json.loads(logs.JsonFormatter().format(record(lesson_id=object)))
    assert entry["lesson_id"] == str(object)


# What logs.configure() turns off for the whole process: restored for the tests that follow.
RECORD_SWITCHES = ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing")


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    switches = {name: getattr(logging, name) for name in RECORD_SWITCHES}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, value in switches.items():
        setattr(logging, name, value)


def test_configure_logging_json_writes_json_to_stderr(
    root_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    configure_logging("INFO", "json")
    logging.getLogger("rollcall.test").info("hello", extra={"sid": "s1"})
    logging.getLogger("rollcall.test").debug("not at INFO")
    lines = stderr.getvalue().splitlines()
    assert [json.loads(line)["sid"] for line in lines] == ["s1"]


def test_log_format_defaults_to_text_and_takes_json_from_flag_or_environment() -> None:
    assert parse_config([], environ={}).log_format == "text"
    assert parse_config(["--log-format", "json"], environ={}).log_format == "json"
    assert parse_config([], environ={"ROLLCALL_LOG_FORMAT": "json"}).log_format == "json"


def test_an_unknown_log_format_exits_2_naming_the_flag(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_config(["--log-format", "xml"], environ={})
    assert exit_info.value.code == 2
    assert "--log-format" in capsys.readouterr().err


def test_admin_token_is_off_by_default_and_read_from_flag_or_environment() -> None:
    assert parse_config([], environ={}).admin_token is None
    assert parse_config([], environ={"ADMIN_TOKEN": SECRET}).admin_token == SECRET
    assert parse_config(["--admin-token", SECRET], environ={}).admin_token == SECRET


def test_a_short_admin_token_is_refused_without_echoing_it(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        parse_config(["--admin-token", "short"], environ={})
    err = capsys.readouterr().err
    assert "--admin-token" in err
    assert "short" not in err.replace("characters", "")


def test_the_admin_token_is_not_in_the_config_repr() -> None:
    assert SECRET not in repr(parse_config(["--admin-token", SECRET], environ={}))


def test_server_py_logs_json_lines_when_asked(
    redis_db: redis.Redis, redis_url: str, database_url: str
) -> None:
    # redis_db: an empty Redis, so that no record of an earlier test's process is swept first
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "server.py", "--port", str(port), "--log-format", "json",
         "--admin-token", SECRET, "--redis-url", redis_url, "--database-url", database_url,
         # a secret, so that no teacher-auth warning comes before the lines this test reads,
         # whatever ACCESS_TOKEN_SECRET the environment holds
         "--access-token-secret", TEST_TOKEN_SECRET],
        cwd=ROOT, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stderr is not None
        limit = json.loads(proc.stderr.readline())  # the open-file limit, raised first
        assert limit["logger"] == "web.openfiles"
        assert limit["message"].startswith("open-file limit: soft ")
        first = json.loads(proc.stderr.readline())
        assert first["logger"] == "server"  # as docs/operations.md shows it
        assert "listening on" in first["message"]
        # answered only once serve() has installed its signal handlers
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert b"rollcall_event_loop_lag_seconds" in response.read()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=SERVER_EXIT_TIMEOUT)
    assert proc.returncode == 0
    messages = [json.loads(line)["message"] for line in rest.splitlines()]
    # it hands its presence over for the grace (--handover-grace) instead of clearing it
    assert messages[-4:] == ["shutting down", "retiring", "handed over", "stopped"]
    assert SECRET not in rest
