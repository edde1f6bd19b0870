-- Functions shared by join_lesson.lua and leave_lesson.lua: store/presence.py prepends this file
-- to each of them, so both clear presence the same way.
--
-- A "leaving" list names presence entries a sid may still own, so that they are cleared only
-- where the stored sid is still that sid: a newer connection of the same person is never wiped.
--   ARGV, per entry: the kind ('teacher', 'participant' or 'roster'), the field (user_id,
--                    client_id, or user_id for a roster record), then the successor: the sid of
--                    another live connection of the same person in that lesson, which takes the
--                    entry over, or '' for none
--   KEYS, per entry: lesson_teacher_{lesson_id} for a teacher;
--                    lesson_student_{lesson_id} then {client_id} for a participant;
--                    rollcall:roster:{lesson_id} for a roster record
-- Leaving an entry without a successor deletes the field from the lesson hash and, for a
-- participant, sets the `sid` field of {client_id} to '' (the key keeps its TTL, so a comeback is
-- still seen as a reconnect). With a successor, both hold the successor's sid instead. A roster
-- record is left by roster_leave below.

-- The entries of KEYS[key_at..key_last] and ARGV[arg_at..arg_last]: the presence entries and,
-- apart, the roster entries (each {user_id, roster key, successor}); nil if malformed.
local function leaving_entries(key_at, arg_at, key_last, arg_last)
  if arg_last < arg_at - 1 or (arg_last - arg_at + 1) % 3 ~= 0 then
    return nil
  end
  local entries, roster = {}, {}
  local key = key_at
  for arg = arg_at, arg_last, 3 do
    local kind, field, successor = ARGV[arg], ARGV[arg + 1], ARGV[arg + 2]
    if kind == 'teacher' then
      entries[#entries + 1] = {field, KEYS[key], false, successor}
      key = key + 1
    elseif kind == 'participant' then
      entries[#entries + 1] = {field, KEYS[key], KEYS[key + 1], successor}
      key = key + 2
    elseif kind == 'roster' then
      roster[#roster + 1] = {field, KEYS[key], successor}
      key = key + 1
    else
      return nil
    end
  end
  if key ~= key_last + 1 then
    return nil
  end
  return entries, roster
end

-- An error reply naming the first of KEYS that is neither absent nor a hash, else nil. Scripts
-- call it before their first write: Redis does not roll a script back.
local function wrong_type(script)
  for _, key in ipairs(KEYS) do
    local kind = redis.call('TYPE', key)['ok']
    if kind ~= 'none' and kind ~= 'hash' then
      return redis.error_reply('WRONGTYPE ' .. script .. ': ' .. key .. ' holds a ' .. kind)
    end
  end
  return nil
end

-- Clears (or hands to its successor) what `sid` still owns of `entries`; returns the number of
-- fields changed.
local function leave(entries, sid)
  local cleared = 0
  if sid == '' then
    return cleared
  end
  for _, entry in ipairs(entries) do
    local field, lesson_key, client_key, successor = entry[1], entry[2], entry[3], entry[4]
    if redis.call('HGET', lesson_key, field) == sid then
      if successor == '' then
        redis.call('HDEL', lesson_key, field)
      else
        redis.call('HSET', lesson_key, field, successor)
      end
      cleared = cleared + 1
    end
    if client_key and redis.call('HGET', client_key, 'sid') == sid then
      redis.call('HSET', client_key, 'sid', successor)
      cleared = cleared + 1
    end
  end
  return cleared
end

-- The roster (docs/redis-keys.md, "rollcall's own bookkeeping"): one hash per lesson, rollcall:roster:{lesson_id},
-- whose field {user_id} holds that participant's record as JSON:
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
-- held counts one more join. An unreadable record is replaced by a new one.
local function roster_join(key, user_id, client_id, sid, ttl)
  if ttl <= 0 or user_id == '' then
    return
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

-- roster_leave for each roster entry of a leaving list.
local function roster_leave_all(roster, sid, ttl)
  for _, entry in ipairs(roster) do
    roster_leave(entry[2], entry[1], sid, entry[3], ttl)
  end
end
