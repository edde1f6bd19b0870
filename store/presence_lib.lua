-- Functions shared by join_lesson.lua, leave_lesson.lua, sweep.lua and reassert.lua:
-- store/presence.py prepends this file to each of them, so that they all clear presence (and
-- create a seat map) the same way.
--
-- An "entry list" names presence entries and roster records, so that each is cleared only where
-- the stored sid is still the sid that wrote it: a newer connection of the same person is never
-- wiped.
--   ARGV, per entry: the kind ('teacher', 'participant' or 'roster'), the field (user_id,
--                    client_id, or user_id for a roster record), a sid, then the entry's field in
--                    the held record (below)
--   KEYS, per entry: lesson_teacher_{lesson_id} for a teacher;
--                    lesson_student_{lesson_id} then {client_id} for a participant;
--                    rollcall:roster:{lesson_id} for a roster record
-- The sid is the successor in join_lesson.lua and leave_lesson.lua: the sid of another live
-- connection of the same person in that lesson, which takes the entry over, or '' for none. In
-- sweep.lua it is the sid that the dead process recorded as holding the entry.
--
-- Clearing an entry without a successor deletes the field from the lesson hash and, for a
-- participant, sets the `sid` field of {client_id} to '' (the key keeps its TTL, so a comeback
-- is still seen as a reconnect). With a successor, both hold the successor's sid instead. A
-- roster record is left by roster_leave below.
--
-- The held record of a process (rollcall:held:{process_id}, a hash) follows the presence fields
-- and roster records its sids hold: held field -> sid. A survivor reads it to clear what a dead
-- process held. The join and leave scripts take the process's "bookkeeping" first:
--   KEYS: rollcall:held:{process_id}, rollcall:swept:{process_id}, rollcall:processes
--   ARGV: the TTL in seconds of the held record and registry, the process id, then the roster's
--         TTL in seconds (0: the roster is off, and nothing is written to it)

-- The entries of KEYS[key_at..] and ARGV[arg_at..] to their ends, or nil if malformed. The key
-- of a roster entry is its `lesson_key`.
local function entry_list(key_at, arg_at)
  if arg_at > #ARGV + 1 or (#ARGV - arg_at + 1) % 4 ~= 0 then
    return nil
  end
  local entries = {}
  local key = key_at
  for arg = arg_at, #ARGV, 4 do
    local kind = ARGV[arg]
    local entry = {field = ARGV[arg + 1], sid = ARGV[arg + 2], held = ARGV[arg + 3],
                   lesson_key = KEYS[key], client_key = false, roster = false}
    if kind == 'teacher' then
      key = key + 1
    elseif kind == 'participant' then
      entry.client_key = KEYS[key + 1]
      key = key + 2
    elseif kind == 'roster' then
      entry.roster = true
      key = key + 1
    else
      return nil
    end
    entries[#entries + 1] = entry
  end
  if key ~= #KEYS + 1 then
    return nil
  end
  return entries
end

-- The bookkeeping at KEYS[key_at..key_at + 2] and ARGV[arg_at..arg_at + 2], or nil if malformed.
local function bookkeeping(key_at, arg_at)
  local ttl, roster_ttl = tonumber(ARGV[arg_at]), tonumber(ARGV[arg_at + 2])
  if ttl == nil or roster_ttl == nil or ARGV[arg_at + 1] == nil or KEYS[key_at + 2] == nil then
    return nil
  end
  return {held = KEYS[key_at], swept = KEYS[key_at + 1], processes = KEYS[key_at + 2],
          not_hashes = {[key_at + 1] = true, [key_at + 2] = true},
          ttl = ttl, process_id = ARGV[arg_at + 1], roster_ttl = roster_ttl}
end

-- The type of `key` when it is neither absent nor a hash, else nil.
local function not_a_hash(key)
  local kind = redis.call('TYPE', key)['ok']
  if kind ~= 'none' and kind ~= 'hash' then
    return kind
  end
  return nil
end

-- An error reply naming the first of KEYS (but the swept key and registry of `book`) that is
-- neither absent nor a hash, else nil. Scripts call it before their first write: Redis does not
-- roll a script back.
local function wrong_type(script, book)
  for i, key in ipairs(KEYS) do
    local kind = not book.not_hashes[i] and not_a_hash(key)
    if kind then
      return redis.error_reply('WRONGTYPE ' .. script .. ': ' .. key .. ' holds a ' .. kind)
    end
  end
  return nil
end

-- Whether the process whose sids the script writes for has been swept: declared dead by a
-- survivor, which clears (or has cleared) everything it held. Such a process writes nothing new.
local function is_swept(book)
  return redis.call('EXISTS', book.swept) == 1
end

local HSET_CHUNK = 1000  -- field/value pairs per HSET; keeps unpack() within Lua's stack limit

-- Creates the seat map `key` (seats 1..seat_count, each ''), unless it exists or seat_count < 1;
-- returns 1 when it did, else 0. Never touches an existing map.
local function create_seat_map(key, seat_count)
  if seat_count < 1 or redis.call('EXISTS', key) == 1 then
    return 0
  end
  local fields = {}
  for seat = 1, seat_count do
    fields[#fields + 1] = tostring(seat)
    fields[#fields + 1] = ''
    if #fields == 2 * HSET_CHUNK then
      redis.call('HSET', key, unpack(fields))
      fields = {}
    end
  end
  if #fields > 0 then
    redis.call('HSET', key, unpack(fields))
  end
  return 1
end

-- The roster (docs/redis-keys.md, "rollcall's own bookkeeping"): one hash per lesson,
-- rollcall:roster:{lesson_id}, whose field {user_id} holds that participant's record as JSON:
--   {"sid": the live connection holding it, '' once none does; "client_id": of the last join;
--    "first": "last": Redis TIME in ms of the first join and of the last change; "joins": the
--    number of connections that joined}
-- Redis's clock, not the caller's: every rollcall process (and the sweep of a dead one) stamps
-- records with the same clock. Every change resets the key's TTL to `ttl` (seconds); `ttl` 0
-- means the roster is off and nothing is written.

local function now_ms()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

local function whole(value)
  return type(value) == 'number' and value >= 0 and value == math.floor(value)
end

-- The record of `user_id` in `key`, or nil when there is none or it is not one rollcall wrote.
local function roster_record(key, user_id)
  local raw = redis.call('HGET', key, user_id)
  if not raw then
    return nil
  end
  local ok, record = pcall(cjson.decode, raw)
  if not ok or type(record) ~= 'table' or type(record.sid) ~= 'string'
      or type(record.client_id) ~= 'string' or not whole(record.first)
      or not whole(record.last) or not whole(record.joins) or record.joins < 1 then
    return nil
  end
  return record
end

local function roster_write(key, user_id, record, ttl)
  redis.call('HSET', key, user_id, cjson.encode(record))
  redis.call('EXPIRE', key, ttl)
end

-- A participant's join on `sid`: the record now holds `sid`; a connection other than the one it
-- held counts one more join. An unreadable record is replaced by a new one. Returns whether the
-- record was written (not when the roster is off or there is no user_id).
local function roster_join(key, user_id, client_id, sid, ttl)
  if ttl <= 0 or user_id == '' then
    return false
  end
  local now = now_ms()
  local record = roster_record(key, user_id)
  if record == nil then
    record = {sid = sid, client_id = client_id, first = now, last = now, joins = 1}
  else
    if record.sid ~= sid then
      record.joins = record.joins + 1
    end
    record.sid, record.client_id, record.last = sid, client_id, now
  end
  roster_write(key, user_id, record, ttl)
  return true
end

-- The end of `sid`'s hold on the record of `user_id`: compared and cleared like the presence
-- fields (a record that a newer connection holds, or that is unreadable, is left alone), or handed
-- to `successor`. Returns 1 when the record changed, else 0.
local function roster_leave(key, user_id, sid, successor, ttl)
  if ttl <= 0 or sid == '' then
    return 0
  end
  local record = roster_record(key, user_id)
  if record == nil or record.sid ~= sid then
    return 0
  end
  record.sid, record.last = successor, now_ms()
  roster_write(key, user_id, record, ttl)
  return 1
end

-- The one rule that clears an entry (a disconnect, a lesson switch, a sweep): the fields of
-- `entry` that still hold `sid` are cleared, or handed to `successor`; a roster record is left by
-- roster_leave, with the roster's TTL `roster_ttl`. Returns the number of fields changed (a
-- roster record counts as one). Anything else the scripts come to keep per entry belongs here
-- too, so that a disconnect, a switch and the sweep of a dead process all take it back.
local function clear_entry(entry, sid, successor, roster_ttl)
  if entry.roster then
    return roster_leave(entry.lesson_key, entry.field, sid, successor, roster_ttl)
  end
  local cleared = 0
  if redis.call('HGET', entry.lesson_key, entry.field) == sid then
    if successor == '' then
      redis.call('HDEL', entry.lesson_key, entry.field)
    else
      redis.call('HSET', entry.lesson_key, entry.field, successor)
    end
    cleared = cleared + 1
  end
  if entry.client_key and redis.call('HGET', entry.client_key, 'sid') == sid then
    redis.call('HSET', entry.client_key, 'sid', successor)
    cleared = cleared + 1
  end
  return cleared
end

-- Records in the held record that `sid` holds the entry `held_field`. A new entry also sets the
-- record's TTL (the heartbeat refreshes it) and registers the process, so that a survivor finds it
-- even if it dies before its first heartbeat; a rejoin only updates the sid.
local function hold(book, held_field, sid)
  if redis.call('HSET', book.held, held_field, sid) == 1 then
    redis.call('EXPIRE', book.held, book.ttl)
    redis.call('SADD', book.processes, book.process_id)
    redis.call('EXPIRE', book.processes, book.ttl)
  end
end

-- Clears (or, when `handover`, hands to each entry's successor) what `sid` still owns of
-- `entries`, and updates the held record of `book` alike; returns the number of presence fields
-- changed (roster records are not counted).
local function leave(entries, sid, book, handover)
  local cleared = 0
  if sid == '' then
    return cleared
  end
  for _, entry in ipairs(entries) do
    local successor = handover and entry.sid or ''
    local changed = clear_entry(entry, sid, successor, book.roster_ttl)
    if not entry.roster then
      cleared = cleared + changed
    end
    if changed > 0 and successor ~= '' then
      hold(book, entry.held, successor)
    elseif redis.call('HGET', book.held, entry.held) == sid then
      redis.call('HDEL', book.held, entry.held)
    end
  end
  return cleared
end
