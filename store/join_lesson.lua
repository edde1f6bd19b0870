-- Steps 5-9 of join_lesson (docs/redis-keys.md), atomically: one script run per join, which also
-- leaves what the same socket held in a lesson it joined before (store/presence.py prepends
-- presence_lib.lua), and records what it writes in the process's held record.
--
-- KEYS[1]  lesson_seat_{lesson_id}      the seat map, created when absent, never touched otherwise
-- KEYS[2]  rollcall:held:{process_id}   KEYS[3] rollcall:swept:{process_id}
-- mode "teacher":
--   KEYS[4] lesson_teacher_{lesson_id}  KEYS[5] {user_id}
--   ARGV[7] user_id                     ARGV[8] lesson_id
-- mode "participant" (a participant with a verified access token):
--   KEYS[4] {client_id}                 KEYS[5] lesson_student_{lesson_id}
--   ARGV[7] client_id                   ARGV[8] role
-- mode "seats" (a participant without a token): KEYS[1..3] only, ARGV[1..6].
-- ARGV[1] mode, ARGV[2] seat_count, ARGV[3] sid, ARGV[4] TTL in seconds of the TTL'd keys,
-- ARGV[5] TTL in seconds of the held record, ARGV[6] the held field of the entry written ('' in
-- mode "seats").
-- Then, after the keys and arguments above, the entry list of presence_lib.lua: what this sid
-- held before, cleared first where it still holds it (a socket switching lessons), with the
-- successor of each.
--
-- Returns {seat_map_created, client_key_existed}, each 0 or 1; an error reply starting with
-- SWEPT when the process has been swept (it then writes nothing).
--
-- Redis does not roll a script back: every check that can fail runs before the first write, so a
-- join that fails here writes nothing.

local HSET_CHUNK = 1000  -- field/value pairs per HSET; keeps unpack() within Lua's stack limit

local mode = ARGV[1]
local seat_count = tonumber(ARGV[2])
local sid = ARGV[3]
local ttl = tonumber(ARGV[4])
local held_ttl = tonumber(ARGV[5])
local held_field = ARGV[6]
local held_key, swept_key = KEYS[2], KEYS[3]

local join_keys, join_args = 5, 8
if mode == 'seats' then
  join_keys, join_args = 3, 6
elseif mode ~= 'teacher' and mode ~= 'participant' then
  return redis.error_reply('ERR join_lesson: unknown mode ' .. tostring(mode))
end
local leaving = entry_list(join_keys + 1, join_args + 1)
if leaving == nil or #ARGV < join_args or seat_count == nil or ttl == nil or held_ttl == nil then
  return redis.error_reply('ERR join_lesson: bad arguments')
end

if is_swept(swept_key) then
  return redis.error_reply('SWEPT join_lesson: this process has been swept')
end

local refused = wrong_type('join_lesson', 3)
if refused then
  return refused
end

leave(leaving, sid, held_key, held_ttl, true)

local created = 0
if seat_count >= 1 and redis.call('EXISTS', KEYS[1]) == 0 then
  local fields = {}
  for seat = 1, seat_count do
    fields[#fields + 1] = tostring(seat)
    fields[#fields + 1] = ''
    if #fields == 2 * HSET_CHUNK then
      redis.call('HSET', KEYS[1], unpack(fields))
      fields = {}
    end
  end
  if #fields > 0 then
    redis.call('HSET', KEYS[1], unpack(fields))
  end
  created = 1
end

local existed = 0
if mode == 'teacher' then
  redis.call('HSET', KEYS[4], ARGV[7], sid)
  redis.call('EXPIRE', KEYS[4], ttl)
  redis.call('HSET', KEYS[5], 'lesson_id', ARGV[8])
  hold(held_key, held_field, sid, held_ttl)
elseif mode == 'participant' then
  existed = redis.call('EXISTS', KEYS[4])
  redis.call('HSET', KEYS[4], 'sid', sid, 'client_id', ARGV[7], 'role', ARGV[8])
  redis.call('EXPIRE', KEYS[4], ttl)
  redis.call('HSET', KEYS[5], ARGV[7], sid)
  hold(held_key, held_field, sid, held_ttl)
end

return {created, existed}
