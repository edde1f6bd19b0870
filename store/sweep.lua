-- One batch of the sweep of a dead process (store/liveness.py): what its held record says its
-- sids held (presence entries and roster records) is cleared where they still hold it, by the rule
-- a disconnect follows (clear_entry of presence_lib.lua, which store/presence.py prepends), and
-- taken off the held record.
--
-- KEYS[1] rollcall:held:{dead}  KEYS[2] rollcall:swept:{dead}  KEYS[3] rollcall:processes
-- ARGV[1] the sweeping process's id, which must be the one named by KEYS[2] (its claim)
-- ARGV[2] the dead process's id
-- ARGV[3] '1' for the last batch: the held record is then deleted and the dead process is taken
--         off the registry
-- ARGV[4] the roster's TTL in seconds, the sweeping process's (0: roster records are only taken
--         off the held record)
-- ARGV[5..] and KEYS[4..] the entry list of presence_lib.lua, each with the sid the held record
-- names for it.
--
-- Returns {presence entries that still held their dead sid, presence fields cleared, roster
-- records left}; an error reply starting with NOTCLAIMED when the claim is not (or no longer) the
-- sweeper's, and nothing is written. An entry whose keys are no longer hashes is only taken off
-- the held record.

local entries = entry_list(4, 5)
local roster_ttl = tonumber(ARGV[4])
if entries == nil or roster_ttl == nil then
  return redis.error_reply('ERR sweep: bad arguments')
end
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return redis.error_reply('NOTCLAIMED sweep: ' .. ARGV[2] .. ' is not claimed by ' .. ARGV[1])
end

local ghosts, cleared, rosters = 0, 0, 0
for _, entry in ipairs(entries) do
  if redis.call('HGET', KEYS[1], entry.held) == entry.sid then
    if not not_a_hash(entry.lesson_key) and not (entry.client_key and not_a_hash(entry.client_key)) then
      local fields = clear_entry(entry, entry.sid, '', roster_ttl)
      if entry.roster then
        rosters = rosters + fields
      elseif fields > 0 then
        ghosts = ghosts + 1
        cleared = cleared + fields
      end
    end
    redis.call('HDEL', KEYS[1], entry.held)
  end
end

if ARGV[3] == '1' then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[3], ARGV[2])
end

return {ghosts, cleared, rosters}
