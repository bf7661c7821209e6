#!lua flags=allow-oom
-- A flushed digest becomes its delivery: take the digest.v1 job off the worker's processing
-- list, push the finding.digest delivery job (or hold it in the delayed set until the
-- endpoint's quiet hours end) and delete the flushed findings, in one step. A worker killed
-- before this step leaves the job to be handed back and the findings where they were; after
-- it, the delivery exists once.
-- Returns 0 when the lease was lost, 1 otherwise.
-- KEYS[1] processing, KEYS[2] ready, KEYS[3] delayed, KEYS[4] flushed key; ARGV[1] raw job,
-- ARGV[2] delivery job ('' for none: the digest was empty), ARGV[3] due time (Unix ms) or 0.
if not claimed(KEYS[1], ARGV[1]) then
  return 0
end
if ARGV[2] ~= '' then
  local due = tonumber(ARGV[3])
  local now = now_ms()
  if due > now then
    redis.call('ZADD', KEYS[3], due, ARGV[2])
  else
    redis.call('RPUSH', KEYS[2], ARGV[2])
  end
end
redis.call('DEL', KEYS[4])
return 1
