#!lua flags=no-writes
-- Counts the delivery jobs of one endpoint on the given processing lists, inside Redis (jobs
-- never cross the wire). A delivery job's JSON starts `{"type":"delivery.v1","delivery_id":…,
-- "endpoint_id":…`, so only its first 160 bytes are looked at. KEYS processing lists;
-- ARGV[1] `"endpoint_id":"<id>"`.
local n = 0
for _, key in ipairs(KEYS) do
  for _, job in ipairs(redis.call('LRANGE', key, 0, -1)) do
    if string.find(string.sub(job, 1, 160), ARGV[1], 1, true) then
      n = n + 1
    end
  end
end
return n
