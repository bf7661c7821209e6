#!lua flags=allow-oom
-- Finish a job: take it off the worker's processing list and push its successors (a fanned-out
-- event's delivery jobs) onto the ready list, in one step. Urgent successors (critical and high
-- findings, failed scans) go to the front, in their order; the rest to the back. Returns 0, and
-- pushes nothing, when the job is no longer on the list (the worker lost its lease and the job
-- went back to ready: whoever holds it now finishes it, so the job keeps a single line of
-- descent).
-- A delivered job names its endpoint's breaker hash as KEYS[3]: a success ends a run of
-- failures, whichever worker counted them, so a closed breaker's count is cleared here, in the
-- same step and at no extra command. An open or half-open one is left to the worker's explicit
-- report (it closes the breaker and drains the lane): the answer is then 2.
-- KEYS[1] processing list, KEYS[2] ready list, KEYS[3] (optional) breaker hash;
-- ARGV[1] the raw job, ARGV[2] how many successors are urgent, ARGV[3..] successor jobs
-- (urgent ones first).
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
  return 0
end
if KEYS[3] then
  local state = redis.call('HGET', KEYS[3], 'state')
  if state == 'closed' then
    redis.call('DEL', KEYS[3])
  elseif state == 'open' or state == 'half_open' then
    return 2
  end
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
