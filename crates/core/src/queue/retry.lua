#!lua flags=allow-oom
-- Re-schedule a failed delivery: replace the job on the processing list by its next attempt in
-- the delayed set, due ARGV[3] ms after now on Redis's clock (so a skewed worker clock cannot
-- fire a retry early or late). Returns the due time in Unix ms, or 0 when the lease was lost.
-- The failed attempt joins its endpoint's Recent Deliveries when KEYS[3] (history list) and
-- ARGV[4] (the entry; ARGV[5] entries kept, ARGV[6] ms kept) are given.
-- KEYS[1] processing list, KEYS[2] delayed zset; ARGV[1] raw job, ARGV[2] next job, ARGV[3] delay ms.
if not claimed(KEYS[1], ARGV[1]) then
  return 0
end
local due = now_ms() + tonumber(ARGV[3])
redis.call('ZADD', KEYS[2], due, ARGV[2])
if KEYS[3] and ARGV[4] and ARGV[4] ~= '' then
  push_history(KEYS[3], ARGV[4], ARGV[5], ARGV[6])
end
return due
