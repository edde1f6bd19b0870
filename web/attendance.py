"""The roll call as a CSV file (GET /lessons/{lesson_id}/attendance.csv), for a spreadsheet.

One row per roster entry, then one per unverified claim (column `verified` false), the columns
named like the JSON fields (RFC 4180: CRLF line ends, quoted where needed, UTF-8). Ids are chosen
by clients, and a spreadsheet runs a cell that starts with `=`, `+`, `-` or `@` as a formula, so
such an id is written with a leading `'` (OWASP's advice against CSV injection); every other value
is written as the JSON has it, null as an empty cell.
"""

from __future__ import annotations

import csv
import datetime
import io
import re
import urllib.parse
from collections.abc import Iterable

from web.roll_call import RosterRow

CONTENT_TYPE = "text/csv; charset=utf-8"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
TEXT_FIELDS = ("user_id", "client_id")
_UNSAFE_IN_FILENAME = re.compile(r"[^A-Za-z0-9._-]")


def _cell(field: str, value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if field in TEXT_FIELDS and text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


def attendance_csv(rows: Iterable[RosterRow]) -> str:
    """The header row, then one row per roster entry."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(RosterRow.FIELDS)
    for row in rows:
        fields = row.as_json()
        writer.writerow(_cell(name, fields[name]) for name in RosterRow.FIELDS)
    return out.getvalue()


def content_disposition(lesson_id: str, day: datetime.date) -> str:
    """An attachment named after the lesson and the day: `attendance_{lesson_id}_{date}.csv`,
    exactly in `filename*` (RFC 6266) and with anything but letters, digits, `.`, `_` and `-`
    replaced by `_` in the plain `filename` that older clients read."""
    name = f"attendance_{lesson_id}_{day.isoformat()}.csv"
    plain = _UNSAFE_IN_FILENAME.sub("_", name)
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{urllib.parse.quote(name, safe='')}"
