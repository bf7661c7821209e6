#!lua flags=allow-oom
-- A digest's timer (digest_due.v1) came due: take it off the worker's processing list and, if
-- the digest it names is still open and its deadline has come (a digest flushed by its scan's
-- end and begun again has a later one, with its own timer), flush it: rename its list to the
-- flushed key, forget its deadline and push the digest.v1 job, in one step.
-- Returns 0 when the lease was lost, 1 when there was nothing to flush, 2 when flushed.
-- KEYS[1] processing, KEYS[2] ready, KEYS[3] digests zset, KEYS[4] digest list, KEYS[5] flushed
-- key, KEYS[6] digest timers hash; ARGV[1] raw job, ARGV[2] digest id, ARGV[3] digest.v1 job.
if not claimed(KEYS[1], ARGV[1]) then
  return 0
end
local now = now_ms()
local deadline = redis.call('ZSCORE', KEYS[3], ARGV[2])
if deadline and tonumber(deadline) <= now + 1000 and redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('RENAME', KEYS[4], KEYS[5])
  redis.call('ZREM', KEYS[3], ARGV[2])
  redis.call('HDEL', KEYS[6], ARGV[2])
  redis.call('RPUSH', KEYS[2], ARGV[3])
  return 2
end
if redis.call('HGET', KEYS[6], ARGV[2]) == ARGV[1] then
  redis.call('HDEL', KEYS[6], ARGV[2])
end
return 1
