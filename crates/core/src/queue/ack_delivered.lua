#!lua flags=allow-oom
-- The script part of finishing a batch of delivered jobs of one worker (`ack_delivered_many` in
-- finish.rs). The same round trip takes each job off the processing list first (an `LREM` per
-- job, sent before this script in one pipeline: 0 when it is no longer there, the lease ran
-- out) and pushes the attempts onto their endpoints' Recent Deliveries after it (`LPUSH`,
-- `LTRIM`, `PEXPIRE` per endpoint). Neither the jobs nor the entries pass through this script:
-- Redis's Lua hashes every byte of every string it is handed, and they are most of a batch's
-- bytes.
-- For each endpoint of the batch, once: what the delivery says of its breaker and lane
-- (`finished_at` in the prelude: 1, 2 or 3).
-- A retry of an acknowledgement whose answer was lost goes through `ack_retried.lua` instead,
-- which records the entry only when the job was still on the list: the lost one may have run.
-- Then, in the same step, the next jobs: up to ARGV[1] taken onto the processing list as
-- `fetch.lua` takes them (`take` in the prelude), so a worker whose deliveries finished runs the
-- next ones without another round trip (0: none, and no keys for it).
-- KEYS[1] processing list, KEYS[1 + i] breaker hash of endpoint i (of m), KEYS[1 + m + i] its
-- lane; with ARGV[1] > 0, KEYS[2 + 2m] ready list, KEYS[3 + 2m] retry list, KEYS[4 + 2m] flows
-- ring, KEYS[5 + 2m] endpoints revision (absent on shards other than 0).
-- ARGV[1] jobs to take, ARGV[2] max job bytes, ARGV[3] m. Returns one answer per endpoint, in
-- order, and what `take` answered ({-1} when nothing was asked).
local m = tonumber(ARGV[3])
local out = {}
for i = 1, m do
  out[i] = finished_at(KEYS[1 + i], KEYS[1 + m + i])
end
local taken = {-1}
local want = tonumber(ARGV[1])
if want > 0 then
  taken = take(KEYS[2 + 2 * m], KEYS[1], KEYS[3 + 2 * m], KEYS[5 + 2 * m], want, tonumber(ARGV[2]), KEYS[4 + 2 * m])
end
return {out, taken}
