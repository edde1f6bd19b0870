-- Steps 5-9 of join_lesson (docs/redis-keys.md), atomically: one script run per join, which also
-- leaves what the same socket held in a lesson it joined before (store/presence.py prepends
-- presence_lib.lua), keeps the lesson's roster, and records what it writes in the process's held
-- record.
--
-- KEYS[1]  lesson_seat_{lesson_id}      the seat map, created when absent, never touched otherwise
-- KEYS[2..4] and ARGV[5..7] the process's bookkeeping (presence_lib.lua), the roster's TTL last
-- ARGV[1] mode, ARGV[2] seat_count, ARGV[3] sid, ARGV[4] TTL in seconds of the TTL'd keys,
-- ARGV[8] the held field of the presence entry written ('' in mode "seats")
-- mode "teacher":
--   KEYS[5] lesson_teacher_{lesson_id}  KEYS[6] {user_id}
--   ARGV[9] user_id                     ARGV[10] lesson_id
-- mode "participant" (a participant with a verified access token):
--   KEYS[5] {client_id}                 KEYS[6] lesson_student_{lesson_id}
--   KEYS[7] rollcall:roster:{lesson_id}
--   ARGV[9] client_id                   ARGV[10] role
--   ARGV[11] user_id, whose roster record the join keeps ('' for none)
--   ARGV[12] the held field of that roster record
-- mode "seats" (a participant without a token): KEYS[1..4] only, ARGV[1..8].
-- Then, after the keys and arguments above, the entry list of presence_lib.lua: what this sid
-- held before (presence entries and roster records), cleared first where it still holds it (a
-- socket switching lessons), with the successor of each.
--
-- Returns {seat_map_created, client_key_existed}, each 0 or 1; an error reply starting with
-- SWEPT when the process has been swept (it then writes nothing).
--
-- Redis does not roll a script back: every check that can fail runs before the first write, so a
-- join that fails here writes nothing.

local mode = ARGV[1]
local seat_count = tonumber(ARGV[2])
local sid = ARGV[3]
local ttl = tonumber(ARGV[4])
local book = bookkeeping(2, 5)
local held_field = ARGV[8]

local join_keys, join_args = 6, 10
if mode == 'seats' then
  join_keys, join_args = 4, 8
elseif mode == 'participant' then
  join_keys, join_args = 7, 12
elseif mode ~= 'teacher' then
  return redis.error_reply('ERR join_lesson: unknown mode ' .. tostring(mode))
end
local leaving = entry_list(join_keys + 1, join_args + 1)
if leaving == nil or book == nil or #ARGV < join_args or #KEYS < join_keys or seat_count == nil
    or ttl == nil then
  return redis.error_reply('ERR join_lesson: bad arguments')
end

if is_swept(book) then
  return redis.error_reply('SWEPT join_lesson: this process has been swept')
end

local refused = wrong_type('join_lesson', book)
if refused then
  return refused
end

leave(leaving, sid, book, true)

local created = create_seat_map(KEYS[1], seat_count)

local existed = 0
if mode == 'teacher' then
  redis.call('HSET', KEYS[5], ARGV[9], sid)
  redis.call('EXPIRE', KEYS[5], ttl)
  redis.call('HSET', KEYS[6], 'lesson_id', ARGV[10])
  hold(book, held_field, sid)
elseif mode == 'participant' then
  existed = redis.call('EXISTS', KEYS[5])
  redis.call('HSET', KEYS[5], 'sid', sid, 'client_id', ARGV[9], 'role', ARGV[10])
  redis.call('EXPIRE', KEYS[5], ttl)
  redis.call('HSET', KEYS[6], ARGV[9], sid)
  hold(book, held_field, sid)
  if roster_join(KEYS[7], ARGV[11], ARGV[9], sid, book.roster_ttl) then
    hold(book, ARGV[12], sid)
  end
end

return {created, existed}
