"""Log formatting and output: readable text for people, one JSON object per line for log
shippers, written to stderr a loop turn's lines at a time (BatchingStreamHandler).

Handlers log one line per connection, join and disconnect and pass what describes it as `extra`
(see EVENT_FIELDS); both formats print those fields. Neither ever prints a token or secret: a
field whose name says it holds one is masked, and so is such a parameter inside a logged URL
(Tornado's access log prints each request's query string).

Values come from clients (ids, namespaces, reasons), so the text format escapes every character
that could end a line or hide text in a terminal: a value can never forge a log line. The JSON
format's encoder escapes control characters already.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REDACTED = "[redacted]"
#: The fields the per-event lines carry, in the order the text format prints them first.
EVENT_FIELDS = (
    "event", "sid", "transport", "role", "lesson_id", "user_id", "client_id", "outcome",
    "reason", "duration_ms",
)
_SECRET_NAME = re.compile(r"token|secret|password|passwd|authorization|cookie", re.IGNORECASE)
_SECRET_WORDS = ("token", "secret", "passw")  # passw: password and passwd
_SECRET_WORD = re.compile("|".join(_SECRET_WORDS), re.IGNORECASE)
# A parameter's name is a whole run of word characters and dashes followed by `=`; the lookbehind
# makes each run a candidate once, so a scan is linear in the text's length. (Searching for the
# secret word first, as one pattern, backtracked over every position of every run: ~70 µs on
# each per-join log line, and quadratic in a long run of a URL.)
_PARAM_NAME = re.compile(r"(?<![\w-])[\w-]+=")
_PARAM_VALUE = re.compile(r"[^&\s\"']+")
# C0 and C1 controls (newline, carriage return, escape...), DEL, Unicode's line and paragraph
# separators, and the bidirectional controls that reorder what a terminal shows.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
_NEEDS_QUOTES = re.compile(rf"[\s\"=\\]|{_UNSAFE.pattern}")
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
#: the lines a BatchingStreamHandler lets wait, however long the loop's turn
MAX_PENDING_LINES = 256
_JSON_SECOND_FORMAT = "%Y-%m-%dT%H:%M:%S"
# One encoder for every line: json.dumps given any option builds a new one per call (a quarter
# of what it spent on a join line).
_JSON_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str, separators=(",", ":"))
# Attributes every LogRecord has; anything else on a record came from `extra`.
_RECORD_ATTRIBUTES = frozenset(
    logging.LogRecord("", logging.INFO, "", 0, "", None, None).__dict__
) | {"message", "asctime", "taskName"}


def redact(text: str) -> str:
    """`text` with the value of every token-, secret- or password-named parameter masked."""
    folded = text.casefold()  # folds as IGNORECASE does (the long s, the Kelvin sign)
    for word in _SECRET_WORDS:  # a loop, not any() over a generator: a third of the cost
        if word in folded:
            break
    else:
        return text  # the common line: nothing to mask, nothing to copy
    parts: list[str] = []
    done = 0
    for name in _PARAM_NAME.finditer(text):
        if name.start() < done or _SECRET_WORD.search(name.group()) is None:
            continue  # inside a value already masked, or a name that holds no secret
        value = _PARAM_VALUE.match(text, name.end())
        if value is not None:
            parts += (text[done:value.start()], REDACTED)
            done = value.end()
    parts.append(text[done:])
    return "".join(parts)


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a log call passed as `extra`, EVENT_FIELDS first, secrets masked."""
    attributes = record.__dict__
    # A set difference (C) rather than a test per attribute (a record has ~20 of its own); the
    # handlers pass the same few sets of names, so each set's order and masking are worked out
    # once.
    plan = _field_plan(frozenset(attributes.keys() - _RECORD_ATTRIBUTES))
    return {key: REDACTED if secret else attributes[key] for key, secret in plan}


@functools.lru_cache(maxsize=1024)
def _field_plan(names: frozenset[str]) -> tuple[tuple[str, bool], ...]:
    """The extra fields of a record with these non-standard attributes, in the order they are
    printed, each with whether its name says it holds a secret."""
    shown = {name for name in names if not name.startswith("_")}
    ordered = [key for key in EVENT_FIELDS if key in shown]
    ordered += sorted(shown.difference(ordered))
    return tuple((key, _SECRET_NAME.search(key) is not None) for key in ordered)


def escape(text: str) -> str:
    """`text` with each character that could end a log line or hide text written as an escape
    (`\\n`, `\\x1b`, `\\u2028`)."""
    return _UNSAFE.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    short = _SHORT_ESCAPES.get(char)
    if short is not None:
        return short
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


class _Seconds:
    """A record's time to the second as text, worked out once per second: consecutive lines
    mostly differ in their milliseconds only."""

    def __init__(self, time_format: str, converter: Callable[[float], time.struct_time]) -> None:
        self._format = time_format
        self._converter = converter
        self._last: tuple[int, str] = (-1, "")

    def text(self, created: float) -> str:
        second = int(created)
        if second != self._last[0]:
            self._last = (second, time.strftime(self._format, self._converter(second)))
        return self._last[1]


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message key=value ...`, for a terminal or journalctl; a traceback
    follows on the next lines. Everything else is one line, whatever the values hold."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._seconds = _Seconds(self.default_time_format, self.converter)

    def _time(self, record: logging.LogRecord) -> str:
        """formatTime's text (`%Y-%m-%d %H:%M:%S,mmm`, local time)."""
        return self.default_msec_format % (self._seconds.text(record.created), record.msecs)

    def format(self, record: logging.LogRecord) -> str:
        record.message = escape(record.getMessage())
        record.asctime = self._time(record)
        lines = [self.formatMessage(record)]
        fields = " ".join(
            [f"{key}={_text_value(value)}" for key, value in extra_fields(record).items()]
        )
        if fields:
            lines[0] = f"{lines[0]} {fields}"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            lines.extend(record.exc_text.split("\n"))
        if record.stack_info:
            lines.extend(self.formatStack(record.stack_info).split("\n"))
        return redact("\n".join([lines[0], *map(escape, lines[1:])]))


def _text_value(value: object) -> str:
    """The value as it follows `key=`: bare when it is one plain word, else quoted and escaped."""
    text = "-" if value is None else str(value)
    if text and not _NEEDS_QUOTES.search(text):
        return text
    return '"' + escape(text.replace("\\", "\\\\").replace('"', '\\"')) + '"'


class JsonFormatter(logging.Formatter):
    """One JSON object per line: `ts`, `level`, `logger`, `message`, the extras, `exc_info`."""

    def __init__(self) -> None:
        super().__init__()
        self._seconds = _Seconds(_JSON_SECOND_FORMAT, time.gmtime)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            # ISO 8601 in UTC to the millisecond; record.msecs, as the text format prints it
            "ts": f"{self._seconds.text(record.created)}.{int(record.msecs):03d}+00:00",
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key, value in extra_fields(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exc_info"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exc_info"] = redact(record.exc_text)
        if record.stack_info:
            entry["stack_info"] = redact(self.formatStack(record.stack_info))
        return _JSON_ENCODER.encode(entry)


def formatter(log_format: str) -> logging.Formatter:
    """The formatter for a --log-format value."""
    if log_format == "json":
        return JsonFormatter()
    if log_format == "text":
        return TextFormatter()
    raise ValueError(f"unknown log format {log_format!r}; expected one of {LOG_FORMATS}")


class BatchingStreamHandler(logging.StreamHandler):
    """A StreamHandler that writes the lines logged during one turn of the running event loop
    with one write, at the end of that turn, instead of one write and flush per line.

    A line still reaches the stream within the turn it was logged in: a turn ends in
    microseconds unless the loop is stalled, so operators and tests tailing the log see it at
    once. A WARNING or worse, a line logged with no loop running in this thread (start-up,
    shutdown, another thread), and the MAX_PENDING_LINES-th line waiting, are written at once,
    after what waited before them. flush() and close() write what waits: logging.shutdown()
    does both at exit, so a clean exit or an uncaught exception loses nothing.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        #: formatted lines not yet written, oldest first
        self._pending: list[str] = []
        #: the loop a flush is scheduled on, until it runs
        self._flush_on: asyncio.AbstractEventLoop | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            pending = self._pending
            pending.append(self.format(record))
            if record.levelno < logging.WARNING and len(pending) < MAX_PENDING_LINES:
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:
                    pass  # no loop runs in this thread: written at once, below
                else:
                    if self._flush_on is not loop:  # a loop closed before its flush ran is replaced
                        self._flush_on = loop
                        loop.call_soon(self._scheduled_flush, record)
                    return
            self._write_pending()
        except RecursionError:  # as StreamHandler.emit: a recursion is not a logging error
            raise
        except Exception:
            self.handleError(record)

    def _scheduled_flush(self, record: logging.LogRecord) -> None:
        """The loop's flush. A failure is reported as logging reports one, with the record that
        scheduled it, rather than to the loop's exception handler (which would log it here)."""
        with self.lock:
            self._flush_on = None
            try:
                self._write_pending()
            except Exception:
                self.handleError(record)

    def _write_pending(self) -> None:
        """Write the waiting lines with one write, then flush the stream; under the lock."""
        pending = self._pending
        if pending:
            text = self.terminator.join(pending) + self.terminator
            # dropped before the write: a stream that fails fails once, not on every line
            pending.clear()
            self.stream.write(text)
        self.stream.flush()

    def flush(self) -> None:
        """Write the waiting lines, then flush the stream."""
        with self.lock:
            self._write_pending()

    def close(self) -> None:
        """Write the waiting lines first (basicConfig(force=True) closes without flushing)."""
        try:
            self.flush()
        except (OSError, ValueError):
            pass  # the stream is closed or broken: what waited cannot be written anywhere
        finally:
            super().close()


def configure(level: str, log_format: str) -> None:
    """Send every logger's records to stderr at `level`, formatted as `log_format`."""
    # The logging HOWTO's "Optimization" switches. No format prints where a call was made
    # (path, line, function), its thread or its process, so records need not look them up:
    # findCaller's walk up the stack is the costliest of them. A call's stack_info=True is then
    # ignored too (findCaller collects that stack); rollcall never passes it.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = BatchingStreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    logging.basicConfig(level=getattr(logging, level), handlers=[handler], force=True)
