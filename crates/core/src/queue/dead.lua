#!lua flags=allow-oom
-- Park a job in the dead-letter queue: take it off the processing list, write the entry hash,
-- and list its id (once: a delivery that dies again after a replay keeps one place in the list).
-- The failed attempt joins its endpoint's Recent Deliveries in the same step when KEYS[4]
-- (history list) is given and ARGV[3] (the entry) is not empty (ARGV[4] entries kept, ARGV[5] ms
-- kept). Returns 0 when the lease was lost (then nothing is written).
-- KEYS[1] processing list, KEYS[2] dlq list, KEYS[3] entry hash;
-- ARGV[1] raw job, ARGV[2] dead-letter id, ARGV[6..] field, value, field, value, ...
if not claimed(KEYS[1], ARGV[1]) then
  return 0
end
local listed = redis.call('EXISTS', KEYS[3]) == 1
redis.call('DEL', KEYS[3])
redis.call('HSET', KEYS[3], unpack(ARGV, 6))
if not listed then
  redis.call('LPUSH', KEYS[2], ARGV[2])
end
if KEYS[4] and ARGV[3] ~= '' then
  push_history(KEYS[4], ARGV[3], ARGV[4], ARGV[5])
end
return 1
