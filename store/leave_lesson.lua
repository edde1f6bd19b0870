-- A disconnecting sid's presence (docs/redis-keys.md, "Lifecycle"), cleared atomically where the
-- stored sid is still this sid; store/presence.py prepends presence_lib.lua.
--
-- ARGV[1] the sid; ARGV[2..] and KEYS[1..] the leaving list described in presence_lib.lua.
--
-- Returns the number of fields cleared (0 when a newer connection owns them all).

local sid = ARGV[1]
local entries = leaving_entries(1, 2)
if sid == nil or entries == nil then
  return redis.error_reply('ERR leave_lesson: bad arguments')
end

local refused = wrong_type('leave_lesson')
if refused then
  return refused
end

return leave(entries, sid)
