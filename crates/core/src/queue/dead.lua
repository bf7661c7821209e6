#!lua flags=allow-oom
-- Park a job in the dead-letter queue: take it off the processing list, write the entry hash,
-- and list its id (once: a delivery that dies again after a replay keeps one place in the list).
-- Returns 0 when the lease was lost.
-- KEYS[1] processing list, KEYS[2] dlq list, KEYS[3] entry hash;
-- ARGV[1] raw job, ARGV[2] dead-letter id, ARGV[3..] field, value, field, value, ...
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
  return 0
end
local listed = redis.call('EXISTS', KEYS[3]) == 1
redis.call('DEL', KEYS[3])
redis.call('HSET', KEYS[3], unpack(ARGV, 3))
if not listed then
  redis.call('LPUSH', KEYS[2], ARGV[2])
end
return 1
