-- Functions shared by join_lesson.lua and leave_lesson.lua: store/presence.py prepends this file
-- to each of them, so both clear presence the same way.
--
-- A "leaving" list names presence entries a sid may still own, so that they are cleared only
-- where the stored sid is still that sid: a newer connection of the same person is never wiped.
--   ARGV, per entry: the kind ('teacher' or 'participant'), the field (user_id or client_id),
--                    then the successor: the sid of another live connection of the same person in
--                    that lesson, which takes the entry over, or '' for none
--   KEYS, per entry: lesson_teacher_{lesson_id} for a teacher;
--                    lesson_student_{lesson_id} then {client_id} for a participant
-- Leaving an entry without a successor deletes the field from the lesson hash and, for a
-- participant, sets the `sid` field of {client_id} to '' (the key keeps its TTL, so a comeback is
-- still seen as a reconnect). With a successor, both hold the successor's sid instead.

-- The entries of KEYS[key_at..] and ARGV[arg_at..] to their ends, or nil if malformed.
local function leaving_entries(key_at, arg_at)
  if (#ARGV - arg_at + 1) % 3 ~= 0 then
    return nil
  end
  local entries = {}
  local key = key_at
  for arg = arg_at, #ARGV, 3 do
    local kind, field, successor = ARGV[arg], ARGV[arg + 1], ARGV[arg + 2]
    if kind == 'teacher' then
      entries[#entries + 1] = {field, KEYS[key], false, successor}
      key = key + 1
    elseif kind == 'participant' then
      entries[#entries + 1] = {field, KEYS[key], KEYS[key + 1], successor}
      key = key + 2
    else
      return nil
    end
  end
  if key ~= #KEYS + 1 then
    return nil
  end
  return entries
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

