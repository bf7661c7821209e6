#!lua flags=allow-oom
-- Records that Redis refused a publish for memory (KEYS[1], for ARGV[1] ms): `allow-oom`, so
-- the write goes through at `maxmemory`.
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
return 1
