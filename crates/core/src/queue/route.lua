#!lua flags=allow-oom
-- Fan-out of a batch of event jobs of one worker, each in one step with its acknowledgement
-- (one script run, one round trip and one AOF write for every event that finished planning
-- while the previous batch was on its way). For each event job: take it off the worker's
-- processing list (when it is no longer there the lease was lost: nothing is done for it) and,
-- for each step Rust planned,
--   send:    push a delivery job (urgent ones to the front), or hold it in the delayed set until
--            its quiet hours end (an absolute due time, Unix ms, computed from Redis's clock);
--            when it names its endpoint's lane and breaker (parking on) and that breaker is open
--            with its probe not due (or half-open with its probe out), or disabled, put it at
--            the back of the lane instead, as `park.lua` would after a fetch and an admission:
--            kept as a `delivery_ref.v1` job (`stored_of` in the prelude), its body once in the
--            bodies hash, the lane's next look at the probe time (a day: disabled), unless the
--            lane already holds the lane cap (then it goes to ready, and the worker that fetches
--            it dead-letters it as "endpoint lane full");
--   collect: append a finding to its digest list; a new digest gets its deadline in the digests
--            zset and a timer job (digest_due.v1) in the delayed set, due at that deadline;
--   flush:   (its scan ended) bring the digest's deadline forward to a short grace from now and
--            schedule a timer job for it (digest_due.v1 with the scan's end as its reason), so
--            findings of the scan still being fanned out by other workers join the digest; the
--            timer then flushes it (digest_due.lua); and note the scan's end in the ended
--            scans zset (`<reason>|<digest id>`, a day), so that a digest of the scan opened
--            later (its findings overtaken by the urgent end) is due after a short wait too
--            (`LATE_FINDINGS_WAIT`), with the scan's end as its reason;
--   forward: (queue shards) add the event, as a job for another shard's endpoints, to this
--            shard's outbox for that shard (a zset scored by Redis's clock); a worker then moves
--            it into that shard's ready list (`publish.lua`, deduplicated by event id in the
--            target's forwarded set) and removes it from the outbox;
--   silence: (a delivery silences mute) make nothing; for each silence named, count it and put
--            the event id first in its recent list (`<silence>:recent`, at most 10, no repeats)
--            in this shard's silenced hash.
-- A send or collect step with a dedupe key is skipped when its member was seen within the
-- window (or earlier in this batch; counted in the suppressed hash); otherwise the member is
-- recorded now. Each dedupe key is read once (ZMSCORE) and written once (ZADD, then entries
-- older than the window trimmed and the key set to expire a window after its last entry) per
-- batch, whatever the number of events; Redis's clock (TIME) is read once, and only when a
-- step needs it. A plain send costs its share of one RPUSH (or LPUSH) per batch.
-- KEYS[1] processing, KEYS[2] ready, KEYS[3] delayed, KEYS[4] digests zset, KEYS[5] suppressed
-- hash, KEYS[6] digest timers hash (digest id → its timer job), KEYS[7..] the steps' keys (each
-- once); ARGV[1] number of events, then per event: its raw job, its number of steps, then 11
-- values a step: op, endpoint id, dedupe key index (0: none), dedupe member, window ms, key
-- index A (send: the endpoint's lane, 0: never parked; collect, flush: the digest list; forward:
-- the outbox; silence: the silenced hash), key index B (send: the endpoint's breaker), digest id
-- (send: '1' for urgent; silence: the event id), payload (send: the delivery job; collect: the
-- finding; flush: the timer job; forward: the event job for the other shard; silence: the
-- silence ids, space-separated), extra (send: the id its event's body is kept under when parked;
-- collect: the timer job), number (send: due time or 0; collect: longest wait ms; flush:
-- grace ms). After the events, four values: how many next jobs to take onto the processing list
-- in the same step (`take` in the prelude, after the pushes: 0 for none), the longest job to
-- return, and the key indices of the retry list and of the endpoints' revision (0: none); then
-- the lane cap (0: none) and the key indices of the lanes zset, the bodies and the body refs
-- hashes (0: no parking); then the key indices of the layout hash and the flows ring, and the
-- key prefixes of endpoint flows (`…:flow:e:`) and of urgent endpoint flows (`…:uflow:e:`);
-- then the key index of the ended scans zset (0: none) and the late findings' wait (ms):
-- with fair share on (layout version 2, `layout_version` in the prelude) a plain send goes to the back of
-- its endpoint's flow, not of the ready list; with urgent share on (version 3, `urgent_share`)
-- an urgent send goes to the back of its endpoint's urgent flow, not to the front of the ready
-- list.
-- Returns {8 numbers per event, {sent, held, collected, flushed, suppressed, forwarded, silenced,
-- parked} or {-1, 0, 0, 0, 0, 0, 0, 0} for an event whose job is no longer on the list; what
-- `take` answered ({-1} when nothing was asked); how many lanes' next look this batch set or
-- brought forward}.
local now = nil
local function clock()
  if not now then
    now = now_ms()
  end
  return now
end

-- Parse, and take every event job off the processing list.
local events = {}
local p = 2
for e = 1, tonumber(ARGV[1]) do
  local raw, n = ARGV[p], tonumber(ARGV[p + 1])
  events[e] = { first = p + 2, steps = n, live = claimed(KEYS[1], raw) }
  p = p + 2 + n * 11
end

-- Read every dedupe key once, for the members of live events.
local seen = {} -- key index -> member -> last recorded (ms) or false
local asked = {} -- key index -> members, in order
local window_of = {} -- key index -> longest window among its steps
for _, ev in ipairs(events) do
  if ev.live then
    for s = 0, ev.steps - 1 do
      local b = ev.first + s * 11
      local dk = tonumber(ARGV[b + 2])
      if dk > 0 and ARGV[b] ~= 'flush' then
        if not asked[dk] then
          asked[dk] = {}
          seen[dk] = {}
          window_of[dk] = 0
        end
        local member = ARGV[b + 3]
        if seen[dk][member] == nil then
          seen[dk][member] = false
          table.insert(asked[dk], member)
        end
        window_of[dk] = math.max(window_of[dk], tonumber(ARGV[b + 4]))
      end
    end
  end
end
for dk, members in pairs(asked) do
  local i = 1
  while i <= #members do
    local j = math.min(i + 499, #members)
    local scores = redis.call('ZMSCORE', KEYS[dk], unpack(members, i, j))
    for m = i, j do
      local score = scores[m - i + 1]
      if score then
        seen[dk][members[m]] = tonumber(score)
      end
    end
    i = j + 1
  end
end

local recorded = {} -- key index -> members recorded now, in order
local function duplicate(dk, member, window)
  if dk == 0 then
    return false
  end
  local last = seen[dk][member]
  if last and last > clock() - window then
    return true
  end
  seen[dk][member] = clock()
  if not recorded[dk] then
    recorded[dk] = {}
  end
  table.insert(recorded[dk], member)
  return false
end

-- Parking at fan-out (see the header): what each breaker says, read once per batch; the lanes'
-- new jobs and the bodies they hold, written once per batch.
local lane_max, k_lanes = tonumber(ARGV[p + 4]), tonumber(ARGV[p + 5])
local k_bodies, k_refs = tonumber(ARGV[p + 6]), tonumber(ARGV[p + 7])
local DISABLED_LOOK_MS = 86400000
local wake_of = {} -- breaker key index -> when its lane is looked at next, or false: not parked
local lanes, lane_order = {}, {}
local bodies, body_order = {}, {}
local function park_fresh(endpoint, kl, kb, body_id, job)
  if kl == 0 or k_lanes == 0 or body_id == '' then
    return false
  end
  local wake = wake_of[kb]
  if wake == nil then
    local b = redis.call('HMGET', KEYS[kb], 'state', 'next_probe', 'probe_deadline')
    wake = false
    if b[1] == 'disabled' then
      wake = clock() + DISABLED_LOOK_MS
    elseif b[1] == 'open' or b[1] == 'half_open' then
      local at = tonumber((b[1] == 'open' and b[2] or b[3]) or 0)
      if at > clock() then
        wake = at
      end
    end
    wake_of[kb] = wake
  end
  if not wake then
    return false
  end
  local stored, body = stored_of(job, body_id)
  if not stored then
    return false
  end
  local lane = lanes[kl]
  if not lane then
    lane = { endpoint = endpoint, wake = wake, jobs = {}, len = 0 }
    if lane_max > 0 then
      lane.len = redis.call('LLEN', KEYS[kl])
    end
    lanes[kl] = lane
    lane_order[#lane_order + 1] = kl
  end
  if lane_max > 0 and lane.len >= lane_max then
    return false
  end
  lane.len = lane.len + 1
  lane.jobs[#lane.jobs + 1] = stored
  if not bodies[body_id] then
    bodies[body_id] = { body = body, n = 0 }
    body_order[#body_order + 1] = body_id
  end
  bodies[body_id].n = bodies[body_id].n + 1
  return true
end

local out = {}
local k_layout, k_ring, flow_prefix = tonumber(ARGV[p + 8]), tonumber(ARGV[p + 9]), ARGV[p + 10]
local uflow_prefix = ARGV[p + 11]
-- Scans whose end was fanned out (see `flush`): the zset's key index (0: none) and the wait
-- a digest opened after its scan's end gets instead of its longest wait (`LATE_FINDINGS_WAIT`).
local k_ended, late_wait = tonumber(ARGV[p + 12]), tonumber(ARGV[p + 13])
local ENDED_KEPT_MS = 86400000
-- Why the scan of digest `id` ended ('scan.completed', 'scan.failed'), if it did. The zset is
-- a hint: read and written with pcall, so a corrupt record (the key of another type) only
-- costs late findings their short wait, never the fan-out.
local function ended_reason(id)
  if k_ended == 0 then
    return nil
  end
  for _, reason in ipairs({ 'scan.failed', 'scan.completed' }) do
    local score = redis.pcall('ZSCORE', KEYS[k_ended], reason .. '|' .. id)
    if score and type(score) ~= 'table' then
      return reason
    end
  end
  return nil
end
local version = k_layout > 0 and layout_version(KEYS[k_layout]) or 1
local fair_share, urgent_flows = version >= 2, version >= 3
local urgent, tail = {}, {}
local flows, flow_order = {}, {} -- endpoint -> its plain sends, in order (fair share)
local uflows, uflow_order = {}, {} -- endpoint -> its urgent sends, in order (urgent share)
for _, ev in ipairs(events) do
  local sent, held, collected, flushed, suppressed, forwarded, silenced, parked = 0, 0, 0, 0, 0, 0, 0, 0
  if ev.live then
    for s = 0, ev.steps - 1 do
      local b = ev.first + s * 11
      local op, endpoint = ARGV[b], ARGV[b + 1]
      local dk, member, window = tonumber(ARGV[b + 2]), ARGV[b + 3], tonumber(ARGV[b + 4])
      local ka, id = tonumber(ARGV[b + 5]), ARGV[b + 7]
      local payload, extra, n = ARGV[b + 8], ARGV[b + 9], tonumber(ARGV[b + 10])
      if (op == 'send' or op == 'collect') and duplicate(dk, member, window) then
        redis.call('HINCRBY', KEYS[5], endpoint, 1)
        suppressed = suppressed + 1
      elseif op == 'send' then
        if n > 0 and n > clock() then
          redis.call('ZADD', KEYS[3], n, payload)
          held = held + 1
        elseif park_fresh(endpoint, ka, tonumber(ARGV[b + 6]), extra, payload) then
          parked = parked + 1
          sent = sent + 1
        elseif id == '1' and urgent_flows then
          flow_group(uflows, uflow_order, endpoint, payload)
          sent = sent + 1
        elseif id == '1' then
          urgent[#urgent + 1] = payload
          sent = sent + 1
        elseif fair_share then
          flow_group(flows, flow_order, endpoint, payload)
          sent = sent + 1
        else
          tail[#tail + 1] = payload
          sent = sent + 1
        end
      elseif op == 'collect' then
        if redis.call('RPUSH', KEYS[ka], payload) == 1 then
          local deadline = clock() + n
          -- A digest opened after its scan's end was fanned out (the end is urgent and can
          -- overtake the scan's findings): sent after the late wait, for the scan's end.
          local reason = ended_reason(id)
          local timer = extra
          if reason and string.sub(extra, -20) == '"reason":"max_wait"}' then
            deadline = math.min(deadline, clock() + late_wait)
            timer = string.sub(extra, 1, -21) .. '"reason":"' .. reason .. '"}'
          end
          redis.call('ZADD', KEYS[4], deadline, id)
          redis.call('ZADD', KEYS[3], deadline, timer)
          redis.call('HSET', KEYS[6], id, timer)
        end
        collected = collected + 1
      elseif op == 'flush' then
        -- Remember the scan's end for a day: findings of it fanned out later open a digest
        -- that is sent after a short wait, not after the longest wait (see `collect`).
        local reason = string.match(payload, '"reason":"(scan%.%a+)"}$')
        if k_ended > 0 and reason then
          redis.pcall('ZADD', KEYS[k_ended], clock(), reason .. '|' .. id)
          redis.pcall('ZREMRANGEBYSCORE', KEYS[k_ended], '-inf', clock() - ENDED_KEPT_MS)
        end
        if redis.call('EXISTS', KEYS[ka]) == 1 then
          local due = clock() + n
          local deadline = tonumber(redis.call('ZSCORE', KEYS[4], id) or (due + 1))
          if due < deadline then
            -- The new timer replaces the longest-wait one, which would only find nothing later.
            local old = redis.call('HGET', KEYS[6], id)
            if old then
              redis.call('ZREM', KEYS[3], old)
            end
            redis.call('ZADD', KEYS[4], due, id)
            redis.call('ZADD', KEYS[3], due, payload)
            redis.call('HSET', KEYS[6], id, payload)
          end
          flushed = flushed + 1
        end
      elseif op == 'forward' then
        redis.call('ZADD', KEYS[ka], 'NX', clock(), payload)
        forwarded = forwarded + 1
      elseif op == 'silence' then
        for sid in string.gmatch(payload, '%S+') do
          redis.call('HINCRBY', KEYS[ka], sid, 1)
          local field = sid .. ':recent'
          local recent = { id }
          for e in string.gmatch(redis.call('HGET', KEYS[ka], field) or '', '%S+') do
            if e ~= id and #recent < 10 then
              recent[#recent + 1] = e
            end
          end
          redis.call('HSET', KEYS[ka], field, table.concat(recent, ' '))
        end
        silenced = silenced + 1
      end
    end
    out[#out + 1] = sent
  else
    out[#out + 1] = -1
  end
  out[#out + 1] = held
  out[#out + 1] = collected
  out[#out + 1] = flushed
  out[#out + 1] = suppressed
  out[#out + 1] = forwarded
  out[#out + 1] = silenced
  out[#out + 1] = parked
end

-- The parked deliveries, at the back of their lanes, and their bodies, held once each.
-- `looks_moved`: lanes whose next look this batch set or brought forward (the promoter
-- waits for the earliest look, so only these can need it sooner).
local looks_moved = 0
for _, kl in ipairs(lane_order) do
  local lane = lanes[kl]
  chunked('RPUSH', KEYS[kl], lane.jobs, 500)
  -- An earlier look already set stays (LT), as park.lua keeps it.
  looks_moved = looks_moved + redis.call('ZADD', KEYS[k_lanes], 'LT', 'CH', lane.wake, lane.endpoint)
end
-- Every body in one HSET: a body id names its JSON's hash, so writing a body already held
-- writes the same bytes (what HSETNX, one command a body, would have kept). Its count of
-- references goes up by the deliveries parked with it: read in one HMGET and written back in
-- one HSET (the script runs alone, so nothing changes between the two), two commands a batch
-- where one HINCRBY a body was one command a parked delivery.
local held, ids = {}, {}
for _, body_id in ipairs(body_order) do
  held[#held + 1] = body_id
  held[#held + 1] = bodies[body_id].body
  ids[#ids + 1] = body_id
end
chunked('HSET', KEYS[k_bodies], held, 1000)
local i = 1
while i <= #ids do
  local chunk = { unpack(ids, i, math.min(#ids, i + 499)) }
  local counts = redis.call('HMGET', KEYS[k_refs], unpack(chunk))
  local refs = {}
  for j, body_id in ipairs(chunk) do
    refs[#refs + 1] = body_id
    refs[#refs + 1] = (tonumber(counts[j]) or 0) + bodies[body_id].n
  end
  redis.call('HSET', KEYS[k_refs], unpack(refs))
  i = i + 500
end

-- Record what was let through, once per dedupe key.
for dk, members in pairs(recorded) do
  local args = {}
  for _, m in ipairs(members) do
    args[#args + 1] = now
    args[#args + 1] = m
  end
  chunked('ZADD', KEYS[dk], args, 500)
  redis.call('ZREMRANGEBYSCORE', KEYS[dk], '-inf', now - window_of[dk])
  redis.call('PEXPIRE', KEYS[dk], window_of[dk])
end

-- LPUSH puts each at the front in turn: push the urgent ones last to first, in bounded chunks
-- (Lua's stack caps how many values one call may take).
local j = #urgent
while j >= 1 do
  local i = math.max(1, j - 499)
  local chunk = {}
  for k = j, i, -1 do
    chunk[#chunk + 1] = urgent[k]
  end
  redis.call('LPUSH', KEYS[2], unpack(chunk))
  j = i - 1
end
chunked('RPUSH', KEYS[2], tail, 500)

for _, endpoint in ipairs(uflow_order) do
  flow_push(urgent_ring(KEYS[k_ring]), uflow_prefix .. endpoint, uflows[endpoint])
end
for _, endpoint in ipairs(flow_order) do
  flow_push(KEYS[k_ring], flow_prefix .. endpoint, flows[endpoint])
end

local taken = {-1}
local want = tonumber(ARGV[p])
if want > 0 then
  local rev = tonumber(ARGV[p + 3])
  taken = take(KEYS[2], KEYS[1], KEYS[tonumber(ARGV[p + 2])], rev > 0 and KEYS[rev] or nil, want, tonumber(ARGV[p + 1]), KEYS[k_ring])
end
if #flow_order + #uflow_order > 0 then
  seed(KEYS[2], KEYS[k_ring])
end
return {out, taken, looks_moved}
