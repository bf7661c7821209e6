#!lua flags=allow-oom
-- Re-schedule a failed delivery: replace the job on the processing list by its next attempt in
-- the delayed set, due ARGV[3] ms after now on Redis's clock (so a skewed worker clock cannot
-- fire a retry early or late). Returns {the due time in Unix ms, or 0 when the lease was lost;
-- what `take` answered ({-1} when nothing was asked or the lease was lost)}.
-- The failed attempt joins its endpoint's Recent Deliveries when ARGV[4] (the entry; ARGV[5]
-- entries kept, ARGV[6] ms kept) is not empty: KEYS[3] is then its history list.
-- In the same step, up to ARGV[7] next jobs are taken onto the processing list for the slot
-- this delivery frees (`take` in the prelude, as `fetch.lua` takes them; ARGV[8] the longest
-- job to return): the keys after the history list (or after KEYS[2] without one) are then the
-- ready list, the retry list, the flows ring and, on shard 0, the endpoints' revision.
-- KEYS[1] processing list, KEYS[2] delayed zset; ARGV[1] raw job, ARGV[2] next job, ARGV[3] delay ms.
if not claimed(KEYS[1], ARGV[1]) then
  return {0, {-1}}
end
local due = now_ms() + tonumber(ARGV[3])
redis.call('ZADD', KEYS[2], due, ARGV[2])
local k = 3
if ARGV[4] and ARGV[4] ~= '' then
  push_history(KEYS[3], ARGV[4], ARGV[5], ARGV[6])
  k = 4
end
local taken = {-1}
local want = tonumber(ARGV[7] or '0')
if want > 0 then
  taken = take(KEYS[k], KEYS[1], KEYS[k + 1], KEYS[k + 3], want, tonumber(ARGV[8]), KEYS[k + 2])
end
return {due, taken}
