-- A disconnecting sid's presence (docs/redis-keys.md, "Lifecycle"), cleared atomically where the
-- stored sid is still this sid; store/presence.py prepends presence_lib.lua.
--
-- KEYS[1] rollcall:held:{process_id}   KEYS[2] rollcall:swept:{process_id}
-- ARGV[1] the sid, ARGV[2] TTL in seconds of the held record; ARGV[3..] and KEYS[3..] the entry
-- list described in presence_lib.lua, whose sids are the successors. A process that has been
-- swept hands nothing over: it only clears.
--
-- Returns the number of fields cleared (0 when a newer connection owns them all).

local sid = ARGV[1]
local held_ttl = tonumber(ARGV[2])
local entries = entry_list(3, 3)
if sid == nil or held_ttl == nil or entries == nil then
  return redis.error_reply('ERR leave_lesson: bad arguments')
end

local refused = wrong_type('leave_lesson', 2)
if refused then
  return refused
end

return leave(entries, sid, KEYS[1], held_ttl, not is_swept(KEYS[2]))
