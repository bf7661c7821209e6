#!lua flags=allow-oom
-- Take a send slot of an endpoint with a rate limit (a Slack webhook's pace is one), across
-- every worker. Slots are spaced ARGV[1] µs apart (the limit's interval), so no window of the
-- limit's period ever holds more sends than its count. A slot that opens within ARGV[2] µs (the
-- horizon) is taken: returns {1, µs until it opens}, and the worker sends then. A later one is
-- not: returns {0, µs until it comes within the horizon}, and the delivery waits in the
-- endpoint's lane (park.lua) until its lane releases it then, with the slot it reserved for it.
-- ARGV[3], when not empty, is that reserved slot (Unix µs, Redis clock; `slot` in the job): it
-- is used, unless it passed more than a horizon ago (a late fetch): then a new slot is taken.
-- KEYS[1] pace key (see `pace_schedule` in the prelude).
local now = now_us()
local every = tonumber(ARGV[1])
local ahead = tonumber(ARGV[2])
local held = tonumber(ARGV[3] or '')
if held and held + ahead >= now then
  return {1, math.max(0, held - now)}
end
local slot = pace_schedule(KEYS[1], now)
if slot - now > ahead then
  return {0, slot - ahead - now}
end
pace_taken(KEYS[1], slot + every, every)
return {1, slot - now}
