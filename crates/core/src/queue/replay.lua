#!lua flags=allow-oom
-- Re-enqueue one dead letter: push its replay job (same delivery id, fresh attempt count) to the
-- retry list (the ready list when that is empty, so a waiting worker wakes) and remove the
-- entry: replays, like retries, wait behind fresh alerts. A delivery's entry keeps no job: the
-- replay job is built from its fields and its event body (`delivery_job`), and the entry's
-- reference to the body is dropped; an entry written before bodies were kept once has its
-- `replay_job` field instead. Returns 1, 0 when there is no such entry, or -1 when the entry
-- has no replayable job (a poison job that could not be decoded, or its body gone).
-- `ref and job`: the job was built from the entry's body, whose reference goes with the entry.
-- KEYS[1] dlq list, KEYS[2] entry hash, KEYS[3] ready list, KEYS[4] retry list, KEYS[5] bodies,
-- KEYS[6] body refs; ARGV[1] dead-letter id.
if redis.call('EXISTS', KEYS[2]) == 0 then
  return 0
end
local job = redis.call('HGET', KEYS[2], 'replay_job')
local ref = redis.call('HGET', KEYS[2], 'body')
if not job and ref then
  local body = redis.call('HGET', KEYS[5], ref)
  if body then
    local replays = tonumber(redis.call('HGET', KEYS[2], 'replays') or '0') + 1
    job = delivery_job(KEYS[2], body, '[]', replays)
  end
end
if ref and job then
  drop_body(KEYS[5], KEYS[6], ref)
end
if not job then
  -- A waiting delivery that a worker of an earlier release took out of a lane during a rolling
  -- upgrade could not read, and dead-lettered as it came (a `delivery_ref.v1` job): it replays
  -- with its body put back (and its reference dropped), its attempts as they were.
  local raw = redis.call('HGET', KEYS[2], 'job')
  if raw then
    local full = unref(KEYS[5], KEYS[6], raw)
    if full ~= raw then
      job = full
    end
  end
end
if not job then
  return -1
end
if redis.call('LLEN', KEYS[3]) == 0 then
  redis.call('RPUSH', KEYS[3], job)
else
  redis.call('RPUSH', KEYS[4], job)
end
redis.call('DEL', KEYS[2])
redis.call('LREM', KEYS[1], 0, ARGV[1])
return 1
