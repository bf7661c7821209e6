#!lua flags=allow-oom
-- Sets one shard's queue layout version (KEYS[1], the shard's layout hash, field `version`) to
-- ARGV[1], 1 or 2 (layout_version.rs), unless it records a version newer than 2 (a later
-- release's: left alone). Going to 1 (a rollback to a release without fair share), every
-- flow's jobs then go to the back of the ready list (KEYS[2]), flow by flow in the ring's order
-- (KEYS[3], deleted): what that release reads. Going to 2 moves nothing: from then on fresh
-- work that is not urgent goes to flows.
-- Returns {the version found ('' when none), 1 if set (0: newer, left alone), jobs moved}.
local found = redis.call('HGET', KEYS[1], 'version') or ''
local n = tonumber(found)
if found ~= '' and (not n or n > 2) then
  return {found, 0, 0}
end
local to = ARGV[1]
redis.call('HSET', KEYS[1], 'version', to)
local moved = 0
if to == '1' then
  for _, flow in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do
    local t = redis.call('TYPE', flow)['ok']
    if t == 'list' then
      local jobs = redis.call('LRANGE', flow, 0, -1)
      chunked('RPUSH', KEYS[2], jobs, 500)
      moved = moved + #jobs
      redis.call('DEL', flow)
    end
  end
  redis.call('DEL', KEYS[3])
end
return {found, 1, moved}
