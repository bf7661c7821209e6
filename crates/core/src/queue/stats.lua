#!lua flags=no-writes
-- Every depth of one queue shard, read in one step: a snapshot no worker's move can tear (read
-- one by one, a delivery released from a lane between the read of `ready` and the read of the
-- lane was in neither, and "drained" could be said of a queue with work).
-- KEYS[1] ready, KEYS[2] retry, KEYS[3] lanes zset, KEYS[4] delayed, KEYS[5] dead-letter list,
-- KEYS[6] endpoints hash, KEYS[7] leases, KEYS[8] lane-full counts, KEYS[9] digests zset,
-- KEYS[10] event bodies, KEYS[11] flows ring;
-- ARGV[1] the key prefix of lanes (`…:lane:`), ARGV[2] of processing lists (`…:processing:`).
-- Returns {ready, retrying, parked, processing, scheduled, dead, endpoints, live workers,
-- lane_full, digests, event bodies, flows}: ready counts the ready list and every fair-share
-- flow, urgent ones included (first attempts either way), flows how many flows hold work.
local now = now_ms()
local ready = redis.call('LLEN', KEYS[1])
local flows = redis.call('LRANGE', KEYS[11], 0, -1)
for _, flow in ipairs(redis.call('LRANGE', urgent_ring(KEYS[11]), 0, -1)) do
  flows[#flows + 1] = flow
end
for _, flow in ipairs(flows) do
  local n = redis.pcall('LLEN', flow)
  if type(n) == 'number' then
    ready = ready + n
  end
end
local parked = 0
for _, id in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  parked = parked + redis.call('LLEN', ARGV[1] .. id)
end
local processing = 0
for _, worker in ipairs(redis.call('ZRANGE', KEYS[7], 0, -1)) do
  processing = processing + redis.call('LLEN', ARGV[2] .. worker)
end
local full = 0
for _, n in ipairs(redis.call('HVALS', KEYS[8])) do
  full = full + tonumber(n)
end
return {
  ready,
  redis.call('LLEN', KEYS[2]),
  parked,
  processing,
  redis.call('ZCARD', KEYS[4]),
  redis.call('LLEN', KEYS[5]),
  redis.call('HLEN', KEYS[6]),
  redis.call('ZCOUNT', KEYS[7], '(' .. now, '+inf'),
  full,
  redis.call('ZCARD', KEYS[9]),
  redis.call('HLEN', KEYS[10]),
  #flows,
}
