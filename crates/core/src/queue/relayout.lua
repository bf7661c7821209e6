#!lua flags=allow-oom
-- Sets one shard's queue layout version (KEYS[1], the shard's layout hash, field `version`) to
-- ARGV[1], 1 or 3 (layout_version.rs), unless it records a version newer than 3 (a later
-- release's: left alone). Going to 1 (a rollback to a release without fair share), the urgent
-- flows' jobs go to the front of the ready list (KEYS[2]), where such a release looks for urgent
-- work, flow by flow in their ring's order (`urgent_ring` of KEYS[3], deleted), and every other
-- flow's jobs to its back, flow by flow in the ring's order (KEYS[3], deleted): what that
-- release reads. Going to 3 moves nothing: from then on fresh work waits in flows, urgent work
-- in urgent flows.
-- Returns {the version found ('' when none), 1 if set (0: newer, left alone), jobs moved}.
local found = redis.call('HGET', KEYS[1], 'version') or ''
local n = tonumber(found)
if found ~= '' and (not n or n > 3) then
  return {found, 0, 0}
end
local to = ARGV[1]
redis.call('HSET', KEYS[1], 'version', to)
local moved = 0
-- Each flow named in `ring` that is a list: its jobs, in order, and the flow deleted.
local function emptied(ring)
  local all = {}
  for _, flow in ipairs(redis.call('LRANGE', ring, 0, -1)) do
    if redis.call('TYPE', flow)['ok'] == 'list' then
      for _, job in ipairs(redis.call('LRANGE', flow, 0, -1)) do
        all[#all + 1] = job
      end
      redis.call('DEL', flow)
    end
  end
  redis.call('DEL', ring)
  return all
end
if to == '1' then
  local urgent = emptied(urgent_ring(KEYS[3]))
  -- LPUSH puts each at the front in turn: the last first, so the first ends up in front.
  local reversed = {}
  for i = #urgent, 1, -1 do
    reversed[#reversed + 1] = urgent[i]
  end
  chunked('LPUSH', KEYS[2], reversed, 500)
  local fresh = emptied(KEYS[3])
  chunked('RPUSH', KEYS[2], fresh, 500)
  moved = #urgent + #fresh
end
return {found, 1, moved}
