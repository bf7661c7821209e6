#!lua flags=allow-oom
-- Re-enqueue one dead letter: push its replay job (same delivery id, fresh attempt count) to the
-- ready list and remove the entry. Returns 1, 0 when there is no such entry, or -1 when the
-- entry has no replayable job (a poison job that could not be decoded).
-- KEYS[1] dlq list, KEYS[2] entry hash, KEYS[3] ready list; ARGV[1] dead-letter id.
if redis.call('EXISTS', KEYS[2]) == 0 then
  return 0
end
local job = redis.call('HGET', KEYS[2], 'replay_job')
if not job then
  return -1
end
redis.call('RPUSH', KEYS[3], job)
redis.call('DEL', KEYS[2])
redis.call('LREM', KEYS[1], 0, ARGV[1])
return 1
