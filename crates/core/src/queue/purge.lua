#!lua flags=allow-oom
-- Delete one dead letter: its entry, its id in the list, and the reference it held to its event
-- body (the body goes with its last reference). Returns 1, or 0 when there was no such entry.
-- KEYS[1] dlq list, KEYS[2] entry hash, KEYS[3] bodies, KEYS[4] body refs; ARGV[1] its id.
local body = redis.call('HGET', KEYS[2], 'body')
if not body then
  -- A waiting delivery an earlier release's worker dead-lettered as it came (see replay.lua).
  local _, _, id = ref_in(redis.call('HGET', KEYS[2], 'job') or '')
  body = id
end
if body then
  drop_body(KEYS[3], KEYS[4], body)
end
local removed = redis.call('DEL', KEYS[2])
redis.call('LREM', KEYS[1], 0, ARGV[1])
return removed
