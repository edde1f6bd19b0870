-- A process's heartbeat (store/liveness.py): keeps its liveness key alive and it registered, in
-- one atomic run, unless a survivor has swept it meanwhile.
--
-- KEYS[1] rollcall:alive:{process_id}  KEYS[2] rollcall:swept:{process_id}
-- KEYS[3] rollcall:processes           KEYS[4] rollcall:held:{process_id}
-- ARGV[1] the process id, ARGV[2] what the liveness key holds (who the process is, for people),
-- ARGV[3] its TTL in milliseconds, ARGV[4] the TTL in seconds of the registry and held record.
--
-- Returns 'RENEWED' (it was alive), 'REVIVED' (its liveness key had lapsed, but nobody swept it:
-- it is alive again) or 'SWEPT' (a survivor has claimed it: nothing is written).

if redis.call('EXISTS', KEYS[2]) == 1 then
  return 'SWEPT'
end
local existed = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('EXPIRE', KEYS[3], ARGV[4])
if redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('EXPIRE', KEYS[4], ARGV[4])
end
if existed == 1 then
  return 'RENEWED'
end
return 'REVIVED'
