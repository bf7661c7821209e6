#!lua flags=allow-oom
-- Hand back jobs that sit on this worker's processing list but that the worker is not running
-- (the answer to a fetch was lost: Redis restarted mid-reply, the reply timed out, a pipeline
-- was cut short). Each is moved to the front of the ready list only if it is still on the list.
-- KEYS[1] processing list, KEYS[2] ready list; ARGV the jobs. Returns how many moved.
local n = 0
for i = 1, #ARGV do
  if claimed(KEYS[1], ARGV[i]) then
    redis.call('LPUSH', KEYS[2], ARGV[i])
    n = n + 1
  end
end
return n
