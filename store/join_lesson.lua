-- Steps 5-9 of join_lesson (docs/redis-keys.md), atomically: one script run per join, which also
-- leaves what the same socket held in a lesson it joined before (store/presence.py prepends
-- presence_lib.lua).
--
-- KEYS[1]  lesson_seat_{lesson_id}      the seat map, created when absent, never touched otherwise
-- mode "teacher":
--   KEYS[2] lesson_teacher_{lesson_id}  KEYS[3] {user_id}
--   ARGV[5] user_id                     ARGV[6] lesson_id
-- mode "participant" (a participant with a verified access token):
--   KEYS[2] {client_id}                 KEYS[3] lesson_student_{lesson_id}
--   ARGV[5] client_id                   ARGV[6] role
-- mode "seats" (a participant without a token): KEYS[1] only.
-- ARGV[1] mode, ARGV[2] seat_count, ARGV[3] sid, ARGV[4] TTL in seconds of the TTL'd keys.
-- Then, after the keys and arguments above, the leaving list of presence_lib.lua: what this sid
-- held before, cleared first where it still holds it (a socket switching lessons).
-- Last, the roster (presence_lib.lua): KEYS[#KEYS] rollcall:roster:{lesson_id};
-- ARGV[#ARGV - 1] its TTL in seconds (0: roster off), ARGV[#ARGV] the participant's user_id.
--
-- Returns {seat_map_created, client_key_existed}, each 0 or 1.
--
-- Redis does not roll a script back: every check that can fail runs before the first write, so a
-- join that fails here writes nothing.

local HSET_CHUNK = 1000  -- field/value pairs per HSET; keeps unpack() within Lua's stack limit

local mode = ARGV[1]
local seat_count = tonumber(ARGV[2])
local sid = ARGV[3]
local ttl = tonumber(ARGV[4])

local join_keys, join_args = 3, 6
if mode == 'seats' then
  join_keys, join_args = 1, 4
elseif mode ~= 'teacher' and mode ~= 'participant' then
  return redis.error_reply('ERR join_lesson: unknown mode ' .. tostring(mode))
end
local roster_key, roster_ttl, roster_user = KEYS[#KEYS], tonumber(ARGV[#ARGV - 1]), ARGV[#ARGV]
local leaving, leaving_roster = leaving_entries(join_keys + 1, join_args + 1, #KEYS - 1, #ARGV - 2)
if leaving == nil or #KEYS < join_keys + 1 or #ARGV < join_args + 2 or seat_count == nil
    or ttl == nil or roster_ttl == nil then
  return redis.error_reply('ERR join_lesson: bad arguments')
end

local refused = wrong_type('join_lesson')
if refused then
  return refused
end

leave(leaving, sid)
roster_leave_all(leaving_roster, sid, roster_ttl)

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
  redis.call('HSET', KEYS[2], ARGV[5], sid)
  redis.call('EXPIRE', KEYS[2], ttl)
  redis.call('HSET', KEYS[3], 'lesson_id', ARGV[6])
elseif mode == 'participant' then
  existed = redis.call('EXISTS', KEYS[2])
  redis.call('HSET', KEYS[2], 'sid', sid, 'client_id', ARGV[5], 'role', ARGV[6])
  redis.call('EXPIRE', KEYS[2], ttl)
  redis.call('HSET', KEYS[3], ARGV[5], sid)
  roster_join(roster_key, roster_user, ARGV[5], sid, roster_ttl)
end

return {created, existed}
