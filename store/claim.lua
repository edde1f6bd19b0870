-- Claims a dead process for sweeping (store/liveness.py), so that only one survivor sweeps it:
-- its swept key names the claimer from then on, which also makes the dead process's own scripts
-- refuse to write, should it ever run again. A claimer that died in turn may be replaced.
--
-- KEYS[1] rollcall:alive:{dead}  KEYS[2] rollcall:swept:{dead}
-- KEYS[3] rollcall:alive:{the claimer read before} (KEYS[1] again when there was none)
-- ARGV[1] the claiming process's id, ARGV[2] the claimer read before ('' for none),
-- ARGV[3] TTL in seconds of the swept key.
--
-- Returns 'CLAIMED' (the caller sweeps it), 'ALIVE' (its liveness key is back or never lapsed),
-- 'TAKEN' (a live process claimed it) or 'RACED' (the claim changed since it was read).

if redis.call('EXISTS', KEYS[1]) == 1 then
  return 'ALIVE'
end
local claimer = redis.call('GET', KEYS[2]) or ''
if claimer ~= ARGV[2] then
  return 'RACED'
end
if claimer ~= '' and claimer ~= ARGV[1] and redis.call('EXISTS', KEYS[3]) == 1 then
  return 'TAKEN'
end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[3])
return 'CLAIMED'
