-- Functions shared by join_lesson.lua, leave_lesson.lua and sweep.lua: store/presence.py
-- prepends this file to each of them, so that all three clear presence the same way.
--
-- An "entry list" names presence entries, so that each is cleared only where the stored sid is
-- still the sid that wrote it: a newer connection of the same person is never wiped.
--   ARGV, per entry: the kind ('teacher' or 'participant'), the field (user_id or client_id),
--                    a sid, then the entry's field in the held record (below)
--   KEYS, per entry: lesson_teacher_{lesson_id} for a teacher;
--                    lesson_student_{lesson_id} then {client_id} for a participant
-- The sid is the successor in join_lesson.lua and leave_lesson.lua: the sid of another live
-- connection of the same person in that lesson, which takes the entry over, or '' for none. In
-- sweep.lua it is the sid that the dead process recorded as holding the entry.
--
-- Clearing an entry without a successor deletes the field from the lesson hash and, for a
-- participant, sets the `sid` field of {client_id} to '' (the key keeps its TTL, so a comeback
-- is still seen as a reconnect). With a successor, both hold the successor's sid instead.
--
-- The held record of a process (rollcall:held:{process_id}, a hash) follows the presence fields
-- its sids hold: held field -> sid. A survivor reads it to clear what a dead process held. The
-- join and leave scripts take the process's "bookkeeping" first:
--   KEYS: rollcall:held:{process_id}, rollcall:swept:{process_id}, rollcall:processes
--   ARGV: the TTL in seconds of the held record and registry, then the process id

-- The entries of KEYS[key_at..] and ARGV[arg_at..] to their ends, or nil if malformed.
local function entry_list(key_at, arg_at)
  if arg_at > #ARGV + 1 or (#ARGV - arg_at + 1) % 4 ~= 0 then
    return nil
  end
  local entries = {}
  local key = key_at
  for arg = arg_at, #ARGV, 4 do
    local kind = ARGV[arg]
    local entry = {field = ARGV[arg + 1], sid = ARGV[arg + 2], held = ARGV[arg + 3],
                   lesson_key = KEYS[key], client_key = false}
    if kind == 'teacher' then
      key = key + 1
    elseif kind == 'participant' then
      entry.client_key = KEYS[key + 1]
      key = key + 2
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

-- The bookkeeping at KEYS[key_at..key_at + 2] and ARGV[arg_at..arg_at + 1], or nil if malformed.
local function bookkeeping(key_at, arg_at)
  local ttl = tonumber(ARGV[arg_at])
  if ttl == nil or ARGV[arg_at + 1] == nil or KEYS[key_at + 2] == nil then
    return nil
  end
  return {held = KEYS[key_at], swept = KEYS[key_at + 1], processes = KEYS[key_at + 2],
          not_hashes = {[key_at + 1] = true, [key_at + 2] = true},
          ttl = ttl, process_id = ARGV[arg_at + 1]}
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

-- The one rule that clears a presence entry (a disconnect, a lesson switch, a sweep): the fields
-- of `entry` that still hold `sid` are cleared, or handed to `successor`. Returns the number of
-- fields changed. Anything else the scripts come to keep per entry belongs here too, so that a
-- disconnect, a switch and the sweep of a dead process all take it back.
local function clear_entry(entry, sid, successor)
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
-- `entries`, and updates the held record of `book` alike; returns the number of fields changed.
local function leave(entries, sid, book, handover)
  local cleared = 0
  if sid == '' then
    return cleared
  end
  for _, entry in ipairs(entries) do
    local successor = handover and entry.sid or ''
    local changed = clear_entry(entry, sid, successor)
    cleared = cleared + changed
    if changed > 0 and successor ~= '' then
      hold(book, entry.held, successor)
    elseif redis.call('HGET', book.held, entry.held) == sid then
      redis.call('HDEL', book.held, entry.held)
    end
  end
  return cleared
end
