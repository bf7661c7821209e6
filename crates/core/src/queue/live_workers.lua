#!lua flags=no-writes
-- How many workers hold a live lease: KEYS[1] the leases zset, a score after Redis's clock.
return redis.call('ZCOUNT', KEYS[1], '(' .. now_ms(), '+inf')
