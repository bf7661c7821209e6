-- Read one dead letter without carrying its job whole: a poison job is dead-lettered as it came,
-- at any size. Returns nil when there is no such entry, else
-- {reason, failed_at, delivery_id, event_id, event_kind, endpoint_id, attempts,
--  replayable ('1' or '0'), the job's first ARGV[1] bytes, the job's length in bytes};
-- a missing field is nil. Hashes have no range read, so the job is copied into the script once,
-- and only its head goes back over the wire.
-- KEYS[1] entry hash; ARGV[1] most bytes of the job to return.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return false
end
local out = redis.call('HMGET', KEYS[1], 'reason', 'failed_at', 'delivery_id', 'event_id', 'event_kind',
  'endpoint_id', 'attempts')
out[8] = tostring(redis.call('HEXISTS', KEYS[1], 'replay_job'))
local job = redis.call('HGET', KEYS[1], 'job') or ''
out[9] = string.sub(job, 1, tonumber(ARGV[1]))
out[10] = tostring(#job)
return out
