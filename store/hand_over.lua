-- A connection that a stopping process closed while it hands its presence over (docs/redis-keys.md,
-- "Lifecycle"): its presence fields and roster records stay as they are, held by its sid, for the
-- process's grace; this notes, in each roster record the sid still holds, when the connection
-- ended, which the sweep stamps as `last` should nobody take the record over
-- (roster_ended and roster_leave of presence_lib.lua, which store/presence.py prepends).
--
-- ARGV[1] the sid, ARGV[2] the roster's TTL in seconds (0: the roster is off, nothing is written);
-- ARGV[3..] and KEYS[1..] the entry list of presence_lib.lua: the sid's roster records.
--
-- Returns the number of roster records noted.

local sid = ARGV[1]
local roster_ttl = tonumber(ARGV[2])
local entries = entry_list(1, 3)
if sid == nil or roster_ttl == nil or entries == nil then
  return redis.error_reply('ERR hand_over: bad arguments')
end

local noted = 0
for _, entry in ipairs(entries) do
  if entry.roster and not not_a_hash(entry.lesson_key) then
    noted = noted + roster_ended(entry.lesson_key, entry.field, sid, roster_ttl)
  end
end
return noted
