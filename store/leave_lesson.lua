-- A disconnecting sid's presence (docs/redis-keys.md, "Lifecycle"), cleared atomically where the
-- stored sid is still this sid; store/presence.py prepends presence_lib.lua.
--
-- ARGV[1] the sid; ARGV[2..] and KEYS[1..] the leaving list described in presence_lib.lua;
-- last, ARGV[#ARGV] the roster's TTL in seconds (0: roster off).
--
-- Returns the number of presence fields cleared (0 when a newer connection owns them all);
-- roster records are not counted.

local sid, roster_ttl = ARGV[1], tonumber(ARGV[#ARGV])
local entries, roster = leaving_entries(1, 2, #KEYS, #ARGV - 1)
if #ARGV < 2 or entries == nil or roster_ttl == nil then
  return redis.error_reply('ERR leave_lesson: bad arguments')
end

local refused = wrong_type('leave_lesson')
if refused then
  return refused
end

local cleared = leave(entries, sid)
roster_leave_all(roster, sid, roster_ttl)
return cleared
