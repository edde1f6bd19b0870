-- A disconnecting sid's presence and roster records (docs/redis-keys.md, "Lifecycle"), cleared
-- atomically where the stored sid is still this sid; store/presence.py prepends presence_lib.lua.
--
-- KEYS[1..3] and ARGV[2..4] the process's bookkeeping (presence_lib.lua), the roster's TTL last;
-- ARGV[1] the sid; ARGV[5..] and KEYS[4..] the entry list described in presence_lib.lua, whose
-- sids are the successors. A process that has been swept hands nothing over: it only clears.
--
-- Returns the number of presence fields cleared (0 when a newer connection owns them all);
-- roster records are not counted.

local sid = ARGV[1]
local book = bookkeeping(1, 2)
local entries = entry_list(4, 5)
if sid == nil or book == nil or entries == nil then
  return redis.error_reply('ERR leave_lesson: bad arguments')
end

local refused = wrong_type('leave_lesson', book)
if refused then
  return refused
end

return leave(entries, sid, book, not is_swept(book))
