#!lua flags=allow-oom
-- Pace sends to one endpoint across every worker: claim the endpoint's slot for ARGV[1] ms.
-- Returns 0 when claimed (send now), else the ms until the slot frees.
-- KEYS[1] pace key; ARGV[1] interval ms.
if redis.call('SET', KEYS[1], '1', 'PX', ARGV[1], 'NX') then
  return 0
end
return math.max(1, redis.call('PTTL', KEYS[1]))
