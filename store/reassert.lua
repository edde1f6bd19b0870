-- Re-asserts the presence of live connections after Redis lost what rollcall wrote (a restart
-- without persistence, a failover to a replica that lagged, a FLUSHALL): the keys of each
-- connection's last join are written again where they are missing (store/presence.py prepends
-- presence_lib.lua). Nobody joined, so nothing counts as a join: a roster record keeps its count.
--
-- The compare rule: a field is written only where it is absent, '' (cleared by a leave), or
-- already holds this sid. A field holding another sid was written by a newer join (on this
-- process or another) and is left alone, as a leave leaves it alone.
--
-- KEYS[1..3] and ARGV[2..4] the process's bookkeeping (presence_lib.lua), the roster's TTL last;
-- ARGV[1] the TTL in seconds of the TTL'd presence keys (as join_lesson.lua);
-- ARGV[5] n, the number of seat maps; KEYS[4..3+n] lesson_seat_{lesson_id}, ARGV[6..5+n] the
-- seat count of each (a map is created when missing, as a join creates it);
-- then, per entry, five ARGV: kind, field, sid, the entry's held field, and an extra value:
--   'teacher':     field user_id, extra lesson_id; KEYS lesson_teacher_{lesson_id}, {user_id}
--   'participant': field client_id, extra role;   KEYS lesson_student_{lesson_id}, {client_id}
--   'roster':      field user_id, extra client_id; KEYS rollcall:roster:{lesson_id}, or (an
--                  unverified claim, kept alike) field [user_id, client_id], KEYS
--                  rollcall:unverified:{lesson_id}
--
-- Returns {seat maps created, presence fields written, roster records written, entries held};
-- an error reply starting with SWEPT when the process has been swept (it then writes nothing).
-- An entry whose keys are not hashes is skipped (a join would refuse it too).

local ttl = tonumber(ARGV[1])
local book = bookkeeping(1, 2)
local seat_maps = tonumber(ARGV[5])
if ttl == nil or book == nil or seat_maps == nil or (#ARGV - 5 - seat_maps) % 5 ~= 0 then
  return redis.error_reply('ERR reassert: bad arguments')
end
local KEYS_OF = {teacher = 2, participant = 2, roster = 1}
local needed = 3 + seat_maps
for arg = 6 + seat_maps, #ARGV, 5 do
  local count = KEYS_OF[ARGV[arg]]
  if count == nil then
    return redis.error_reply('ERR reassert: unknown kind ' .. tostring(ARGV[arg]))
  end
  needed = needed + count
end
if needed ~= #KEYS then
  return redis.error_reply('ERR reassert: bad arguments')
end
if is_swept(book) then
  return redis.error_reply('SWEPT reassert: this process has been swept')
end

-- Writes `sid` into `field` of `key` where the compare rule allows it. Returns whether the field
-- holds `sid` now, and 1 if it was written (else 0).
local function reassert_field(key, field, sid)
  local current = redis.call('HGET', key, field)
  if current == sid then
    return true, 0
  end
  if current ~= false and current ~= '' then
    return false, 0
  end
  redis.call('HSET', key, field, sid)
  return true, 1
end

local created, written, rosters, held = 0, 0, 0, 0
for i = 1, seat_maps do
  local key = KEYS[3 + i]
  if not not_a_hash(key) then
    created = created + create_seat_map(key, tonumber(ARGV[5 + i]) or 0)
  end
end

local key = 4 + seat_maps
for arg = 6 + seat_maps, #ARGV, 5 do
  local kind, field, sid, held_field, extra =
    ARGV[arg], ARGV[arg + 1], ARGV[arg + 2], ARGV[arg + 3], ARGV[arg + 4]
  local holds = false
  if kind == 'teacher' then
    local lesson_key, user_key = KEYS[key], KEYS[key + 1]
    key = key + 2
    if not not_a_hash(lesson_key) and not not_a_hash(user_key) then
      local wrote
      holds, wrote = reassert_field(lesson_key, field, sid)
      if wrote == 1 then
        redis.call('EXPIRE', lesson_key, ttl)
      end
      if holds then
        written = written + wrote + redis.call('HSETNX', user_key, 'lesson_id', extra)
      end
    end
  elseif kind == 'participant' then
    local lesson_key, client_key = KEYS[key], KEYS[key + 1]
    key = key + 2
    if not not_a_hash(lesson_key) and not not_a_hash(client_key) then
      local in_lesson, wrote = reassert_field(lesson_key, field, sid)
      local in_client, wrote_client = reassert_field(client_key, 'sid', sid)
      if wrote_client == 1 then
        redis.call('HSET', client_key, 'client_id', field, 'role', extra)
        redis.call('EXPIRE', client_key, ttl)
      end
      holds = in_lesson or in_client
      written = written + wrote + wrote_client
    end
  elseif kind == 'roster' then
    local roster_key = KEYS[key]
    key = key + 1
    if book.roster_ttl > 0 and field ~= '' and not not_a_hash(roster_key) then
      local record = roster_record(roster_key, field)
      if record == nil or record.sid == '' then
        local now = now_ms()
        record = record or {first = now, joins = 1}
        record.sid, record.client_id, record.last = sid, extra, now
        roster_write(roster_key, field, record, book.roster_ttl)
        rosters = rosters + 1
      end
      holds = record.sid == sid
    end
  end
  if holds then
    hold(book, held_field, sid)
    held = held + 1
  end
end
return {created, written, rosters, held}
