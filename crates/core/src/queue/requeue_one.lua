#!lua flags=allow-oom
-- Pushes a job to the retry list, or to the ready list when that is empty (so a waiting worker
-- wakes): where a dead-letter replay goes (`replay.lua`), so a redelivery waits behind fresh
-- alerts like a replay. KEYS[1] ready, KEYS[2] retry; ARGV[1] the job.
if redis.call('LLEN', KEYS[1]) == 0 then
  redis.call('RPUSH', KEYS[1], ARGV[1])
else
  redis.call('RPUSH', KEYS[2], ARGV[1])
end
return 1
