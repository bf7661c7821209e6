-- Read one dead letter without carrying its job whole: a poison job is dead-lettered as it came,
-- at any size. Returns nil when there is no such entry, else
-- {reason, failed_at, delivery_id, event_id, event_kind, endpoint_id, attempts,
--  replayable ('1' or '0'), the job's first ARGV[1] bytes, the job's length in bytes};
-- a missing field is nil. Hashes have no range read, so the job is copied into the script once,
-- and only its head goes back over the wire. A delivery's entry keeps no job: it is built from
-- the entry's fields and its event body in KEYS[2] (bodies), as it was when it died.
-- KEYS[1] entry hash, KEYS[2] bodies; ARGV[1] most bytes of the job to return.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return false
end
local out = redis.call('HMGET', KEYS[1], 'reason', 'failed_at', 'delivery_id', 'event_id', 'event_kind',
  'endpoint_id', 'attempts')
local replayable = redis.call('HEXISTS', KEYS[1], 'replay_job')
local job = redis.call('HGET', KEYS[1], 'job')
local ref = redis.call('HGET', KEYS[1], 'body')
if ref then
  local body = redis.call('HGET', KEYS[2], ref)
  if body then
    replayable = 1
    if not job then
      job = delivery_job(KEYS[1], body, out[7] or '[]', redis.call('HGET', KEYS[1], 'replays') or '0')
    end
  end
end
job = job or ''
-- A waiting delivery an earlier release's worker dead-lettered as it came (see replay.lua).
local s, e, id = ref_in(job)
if s then
  local body = redis.call('HGET', KEYS[2], id)
  if body then
    replayable = 1
    job = with_body(job, s, e, body)
  end
end
out[8] = tostring(replayable)
out[9] = string.sub(job, 1, tonumber(ARGV[1]))
out[10] = tostring(#job)
return out
