#!lua flags=allow-oom
-- A delivered job's acknowledgement tried again after a try that failed (Redis unreachable, or
-- its answer lost: that try may have run). All in one step, so the attempt is recorded once: the
-- job is taken off the processing list, and only then (when it was still there) its Recent
-- Deliveries entry pushed and its endpoint's breaker and lane looked at (`finished_at` in the
-- prelude). Answers 0 when the job was no longer on the list (that earlier try finished it, or
-- the lease ran out), else what `finished_at` says (1, 2 or 3). Takes no next job: the slot
-- fetches its own.
-- KEYS[1] processing list, KEYS[2] the endpoint's breaker hash, KEYS[3] its lane, KEYS[4] its
-- history list; ARGV[1] the job, ARGV[2] the entry ('' for none), ARGV[3] history length,
-- ARGV[4] history ms.
if not claimed(KEYS[1], ARGV[1]) then
  return 0
end
if ARGV[2] ~= '' then
  push_history(KEYS[4], ARGV[2], ARGV[3], ARGV[4])
end
return finished_at(KEYS[2], KEYS[3])
