#!lua
-- Publish a batch of events, all or nothing, and at most once per event id within a window.
-- No allow-oom flag: a full Redis refuses the whole script before it runs, so a refused batch
-- leaves nothing behind.
-- KEYS[1] ready list, KEYS[2] published zset (event id -> accepted at, Unix ms, Redis clock),
-- KEYS[3] layout hash, KEYS[4] flows ring; ARGV[1] window ms, then event id, urgent ('1' or
-- '0'), job, its tenant's flow key for its kind (urgent or not; '' for none) for each event.
-- Urgent events (critical and high findings, failed scans) go to the back of their tenant's
-- urgent flow with urgent share on (layout version 3, `layout_version` in the prelude), else to
-- the front of the ready list. The others go to the back of their tenant's flow with fair share
-- on (layout version 2, `layout_version` in the prelude), else to the back of the ready list. Either way
-- one tenant's flood never holds up another tenant's events.
-- Returns, per event, 1 when it was enqueued now, 0 when the id was already accepted within
-- the window (acknowledged without a second job).
local now = now_ms()
local window = tonumber(ARGV[1])
local version = layout_version(KEYS[3])
local fair_share, urgent_flows = version >= 2, version >= 3
local uring = urgent_ring(KEYS[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
local fresh = {}
local flows, flow_order = {}, {}
local uflows, uflow_order = {}, {}
local answer = {}
for i = 2, #ARGV, 4 do
  local added = redis.call('ZADD', KEYS[2], 'NX', now, ARGV[i])
  answer[#answer + 1] = added
  if added == 1 then
    local flow = ARGV[i + 3]
    if ARGV[i + 1] == '1' and urgent_flows and flow ~= '' then
      flow_group(uflows, uflow_order, flow, ARGV[i + 2])
    elseif ARGV[i + 1] == '1' then
      redis.call('LPUSH', KEYS[1], ARGV[i + 2])
    elseif fair_share and flow ~= '' then
      flow_group(flows, flow_order, flow, ARGV[i + 2])
    else
      fresh[#fresh + 1] = ARGV[i + 2]
    end
  end
end
chunked('RPUSH', KEYS[1], fresh, 500)
for _, flow in ipairs(uflow_order) do
  flow_push(uring, flow, uflows[flow])
end
for _, flow in ipairs(flow_order) do
  flow_push(KEYS[4], flow, flows[flow])
end
if #flow_order + #uflow_order > 0 then
  seed(KEYS[1], KEYS[4])
end
return answer
