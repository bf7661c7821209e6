#!lua flags=allow-oom
-- Finish a job: take it off the worker's processing list and push its successors (a fanned-out
-- event's delivery jobs) onto the ready list, in one step. Returns 0, and pushes nothing, when
-- the job is no longer on the list (the worker lost its lease and the job went back to ready:
-- whoever holds it now finishes it, so the job keeps a single line of descent).
-- KEYS[1] processing list, KEYS[2] ready list; ARGV[1] the raw job, ARGV[2..] successor jobs.
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
  return 0
end
local n = #ARGV
local i = 2
while i <= n do
  -- unpack in bounded chunks: Lua's stack caps how many values one call may take
  local j = math.min(i + 499, n)
  redis.call('RPUSH', KEYS[2], unpack(ARGV, i, j))
  i = j + 1
end
return 1
