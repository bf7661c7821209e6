#!lua flags=allow-oom
-- Park a job in the dead-letter queue: take it off the processing list, write the entry hash,
-- and list its id (once: a delivery that dies again after a replay keeps one place in the list).
-- The failed attempt joins its endpoint's Recent Deliveries in the same step when ARGV[3] (the
-- entry for history list KEYS[4]) is not empty (ARGV[4] entries kept, ARGV[5] ms kept).
-- A delivery's entry keeps no copy of its job: its fields (ids, attempts, replays) and body id
-- ARGV[6] (its `body` field) are enough to build the job (`delivery_job` in the prelude) for
-- `dlq show` and a replay; the event's body (ARGV[7]) is kept once in KEYS[5] (bodies) and
-- counted in KEYS[6] (body refs), once per entry; an entry written over drops the reference it
-- held. ARGV[6] is '' for a job that is no delivery (its `job` field keeps it as it came).
-- In the same step, up to ARGV[8] next jobs are taken onto the processing list for the slot
-- this job frees (`take` in the prelude, as `fetch.lua` takes them; ARGV[9] the longest job to
-- return): KEYS[7..] are then the ready list, the retry list, the flows ring and, on shard 0,
-- the endpoints' revision.
-- Returns {1, what `take` answered ({-1} when nothing was asked)}, or {0, {-1}} when the lease
-- was lost (then nothing is written).
-- KEYS[1] processing list, KEYS[2] dlq list, KEYS[3] entry hash;
-- ARGV[1] raw job, ARGV[2] dead-letter id, ARGV[10..] field, value, field, value, ...
if not claimed(KEYS[1], ARGV[1]) then
  return {0, {-1}}
end
local listed = redis.call('EXISTS', KEYS[3]) == 1
if listed then
  local old = redis.call('HGET', KEYS[3], 'body')
  if old then
    drop_body(KEYS[5], KEYS[6], old)
  end
end
redis.call('DEL', KEYS[3])
redis.call('HSET', KEYS[3], unpack(ARGV, 10))
if ARGV[6] ~= '' then
  hold_body(KEYS[5], KEYS[6], ARGV[6], ARGV[7])
  redis.call('HSET', KEYS[3], 'body', ARGV[6])
end
if not listed then
  redis.call('LPUSH', KEYS[2], ARGV[2])
end
if ARGV[3] ~= '' then
  push_history(KEYS[4], ARGV[3], ARGV[4], ARGV[5])
end
local taken = {-1}
local want = tonumber(ARGV[8])
if want > 0 then
  taken = take(KEYS[7], KEYS[1], KEYS[8], KEYS[10], want, tonumber(ARGV[9]), KEYS[9])
end
return {1, taken}
