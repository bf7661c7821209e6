#!lua flags=allow-oom
-- Re-enqueue one dead letter: push its replay job (same delivery id, fresh attempt count) to the
-- retry list (the ready list when that is empty, so a waiting worker wakes) and remove the
-- entry: replays, like retries, wait behind fresh alerts. Returns 1, 0 when there is no such
-- entry, or -1 when the entry has no replayable job (a poison job that could not be decoded).
-- KEYS[1] dlq list, KEYS[2] entry hash, KEYS[3] ready list, KEYS[4] retry list;
-- ARGV[1] dead-letter id.
if redis.call('EXISTS', KEYS[2]) == 0 then
  return 0
end
local job = redis.call('HGET', KEYS[2], 'replay_job')
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
