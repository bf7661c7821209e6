#!lua flags=allow-oom
-- Finish a batch of delivered jobs of one worker in one step (one round trip and one write for
-- all the deliveries that finished while the previous batch was on its way). For each job, as
-- `ack.lua` does for one: take it off the processing list (0 when it is no longer there: the
-- lease ran out), then clear its endpoint's breaker when closed (a success ends a run of
-- failures, whichever worker counted them), or answer 2 when the breaker is open or half-open
-- (the worker then reports the success, which closes it and drains the lane); 1 otherwise.
-- KEYS[1] processing list, KEYS[1 + i] breaker hash of job i's endpoint; ARGV[i] job i.
-- Returns one answer per job, in order.
local out = {}
for i = 1, #ARGV do
  if redis.call('LREM', KEYS[1], 1, ARGV[i]) == 0 then
    out[i] = 0
  else
    local state = redis.call('HGET', KEYS[i + 1], 'state')
    if state == 'closed' then
      redis.call('DEL', KEYS[i + 1])
      out[i] = 1
    elseif state == 'open' or state == 'half_open' then
      out[i] = 2
    else
      out[i] = 1
    end
  end
end
return out
