#!lua flags=allow-oom
-- Pushes attempts onto an endpoint's Recent Deliveries when Redis is at its maxmemory: a
-- delivered batch's entries go with a plain `LPUSH` in the acknowledgement's round trip
-- (`ack_delivered_many` in finish.rs), which Redis refuses then, and this script (allowed at
-- maxmemory, as every script a worker runs) pushes them instead.
-- KEYS[1] history list; ARGV[1] history length, ARGV[2] history ms, ARGV[3..] the entries, oldest
-- first (each becomes the newest in turn).
local entries = {}
for i = 3, #ARGV do
  entries[#entries + 1] = ARGV[i]
end
chunked('LPUSH', KEYS[1], entries, 500)
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[1]) - 1)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return #entries
