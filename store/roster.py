"""Roster records: who joined a lesson, when, on how many connections, and whether a live
connection holds them now.

The join and leave scripts write them (roster_join / roster_leave in store/presence_lib.lua), in
the same script run as the presence keys, into one hash per lesson (store.keys.ROSTER_KEY): field
`{user_id}` -> a JSON object. This module reads them back; it accepts only what the scripts write,
so a field someone else put there reads as no record at all (the scripts treat it the same way).

A join whose token does not vouch for its `user_id` (handlers/tokens.py) keeps no record of that
user: it keeps an unverified claim instead, a record of the same shape in another hash per lesson
(store.keys.UNVERIFIED_KEY), under the field `[user_id, client_id]`, so that nobody can make
another student present, left or reconnected by naming them.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as json_string

#: Default seconds a lesson's roster outlives its last change (--roster-ttl).
ROSTER_TTL = 86400
#: Milliseconds since the epoch of 9999-12-31T23:59:59.999Z, the last instant datetime can hold.
_LAST_MS = 253_402_300_799_999


@dataclass(frozen=True)
class RosterRecord:
    """One participant's record in one lesson."""

    user_id: str
    #: the Socket.IO sid of the live connection holding the record; "" once none does
    sid: str
    #: the client id of the participant's last join
    client_id: str
    first_joined_at: datetime.datetime
    #: the last change: the last join, or the end of the connection that held the record
    last_seen_at: datetime.datetime
    #: connections that joined; a connection joining again while it holds the record is not one
    joins: int

    @property
    def live(self) -> bool:
        return self.sid != ""


def _millis(value: object) -> datetime.datetime | None:
    if type(value) is not int or not 0 <= value <= _LAST_MS:
        return None
    return datetime.datetime.fromtimestamp(value / 1000, datetime.UTC)


def parse_record(user_id: str, raw: str) -> RosterRecord | None:
    """The record a script wrote for `user_id`, or None if `raw` is not one."""
    try:
        fields = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(fields, dict):
        return None
    sid, client_id, joins = fields.get("sid"), fields.get("client_id"), fields.get("joins")
    first, last = _millis(fields.get("first")), _millis(fields.get("last"))
    if (
        not isinstance(sid, str)
        or not isinstance(client_id, str)
        or type(joins) is not int
        or joins < 1
        or first is None
        or last is None
    ):
        return None
    return RosterRecord(user_id, sid, client_id, first, last, joins)


def parse_roster(fields: Mapping[str, str]) -> dict[str, RosterRecord]:
    """The readable records of a lesson's roster hash, by user_id."""
    records = {}
    for user_id, raw in fields.items():
        record = parse_record(user_id, raw)
        if record is not None:
            records[user_id] = record
    return records


def claim_field(user_id: str, client_id: str) -> str:
    """The field of an unverified claim: the JSON array `[user_id, client_id]`, unambiguous
    whatever the ids hold (the C string encoder of the json module: it runs once per such join)."""
    return f"[{json_string(user_id)},{json_string(client_id)}]"


def parse_claims(fields: Mapping[str, str]) -> list[RosterRecord]:
    """The readable unverified claims of a lesson's hash of them, each as the record of the
    `user_id` it claims, by user_id then client id."""
    claims = []
    for field, raw in fields.items():
        try:
            ids = json.loads(field)
        except ValueError:
            continue
        if not (isinstance(ids, list) and len(ids) == 2 and all(isinstance(i, str) for i in ids)):
            continue
        record = parse_record(ids[0], raw)
        if record is not None and record.client_id == ids[1]:
            claims.append(record)
    return sorted(claims, key=lambda claim: (claim.user_id, claim.client_id))
