#!lua flags=allow-oom
-- Finish a job: take it off the worker's processing list and push its successors (a fanned-out
-- event's delivery jobs) onto the ready list, in one step. Urgent successors (critical and high
-- findings, failed scans) go to the front, in their order; the rest to the back. Returns 0, and
-- pushes nothing, when the job is no longer on the list (the worker lost its lease and the job
-- went back to ready: whoever holds it now finishes it, so the job keeps a single line of
-- descent).
-- (Delivered jobs are finished by `ack_delivered.lua`, which also tells the breaker; the worker
-- fans events out through `route.lua`, in batches, which does this for many events at once.)
-- KEYS[1] processing list, KEYS[2] ready list;
-- ARGV[1] the raw job, ARGV[2] how many successors are urgent, ARGV[3..] successor jobs
-- (urgent ones first).
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
  return 0
end
local urgent = tonumber(ARGV[2])
-- LPUSH puts each value at the front in turn: push the urgent ones last to first.
for i = 2 + urgent, 3, -1 do
  redis.call('LPUSH', KEYS[2], ARGV[i])
end
local n = #ARGV
local i = 3 + urgent
while i <= n do
  -- unpack in bounded chunks: Lua's stack caps how many values one call may take
  local j = math.min(i + 499, n)
  redis.call('RPUSH', KEYS[2], unpack(ARGV, i, j))
  i = j + 1
end
return 1
