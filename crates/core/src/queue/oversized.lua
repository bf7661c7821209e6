#!lua flags=allow-oom
-- Dead-letter the first job on the processing list that is longer than ARGV[2] bytes, keeping
-- only its first ARGV[3] bytes, so neither the worker nor anyone reading dead letters has to
-- hold it. Returns its length, or 0 when there is none.
-- KEYS[1] processing list, KEYS[2] dlq list, KEYS[3] entry hash;
-- ARGV[1] dead-letter id, ARGV[2] max job bytes, ARGV[3] bytes kept, ARGV[4] failed_at.
local max_bytes = tonumber(ARGV[2])
for _, job in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  if #job > max_bytes then
    redis.call('LREM', KEYS[1], 1, job)
    local kept = tonumber(ARGV[3])
    redis.call('DEL', KEYS[3])
    redis.call('HSET', KEYS[3],
      'id', ARGV[1],
      'reason', 'job of ' .. #job .. ' bytes is over the ' .. max_bytes
        .. '-byte limit; only its first ' .. math.min(kept, #job) .. ' bytes are kept',
      'failed_at', ARGV[4],
      'job', string.sub(job, 1, kept),
      'job_bytes', #job)
    redis.call('LPUSH', KEYS[2], ARGV[1])
    return #job
  end
end
return 0
