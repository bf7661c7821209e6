#!lua flags=allow-oom
-- Take up to ARGV[1] ready jobs onto this worker's processing list, in one step (one write,
-- so with appendfsync always one fsync for the batch). A job longer than ARGV[2] bytes is
-- moved too but not returned: its place in the answer holds its length, and the worker
-- dead-letters it with `oversized.lua` without ever reading it.
-- allow-oom: taking a job frees no memory by itself, but a worker that cannot take jobs cannot
-- deliver them either, and delivering is what frees memory; publishes are refused meanwhile.
-- First attempts (the ready list, then the fair-share flows in round robin) go before retries
-- and replays (the retry list), so a retry backlog never holds up a fresh alert.
-- The answer starts with the endpoints' revision (KEYS[5]; 0 when never written), so a worker
-- knows in the same round trip whether its cached endpoints are still current; -1 without
-- KEYS[5] (a queue shard other than shard 0, which holds the endpoints).
-- KEYS[1] ready list, KEYS[2] processing list, KEYS[3] retry list, KEYS[4] flows ring,
-- KEYS[5] endpoints revision; ARGV[1] max jobs, ARGV[2] max job bytes.
return take(KEYS[1], KEYS[2], KEYS[3], KEYS[5], tonumber(ARGV[1]), tonumber(ARGV[2]), KEYS[4])
