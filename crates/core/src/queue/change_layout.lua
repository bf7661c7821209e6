-- Sets the recorded shard count (KEYS[1], the layout hash) to ARGV[2] and the earlier counts to
-- ARGV[3] if the count is still ARGV[1]: 1 if it was (a compare-and-set).
if redis.call('HGET', KEYS[1], 'count') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'count', ARGV[2], 'earlier', ARGV[3])
  return 1
end
return 0
