-- prelude.lua: the helpers every script shares, put right after each script's first line (its
-- `#!lua flags=…`) when the scripts are loaded (`Scripts::load` in mod.rs).

-- Redis's clock, in Unix ms: every worker, producer and CLI reads the same time.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Redis's clock in Unix µs: rate limits space sends by the microsecond.
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- An endpoint's send schedule (`{p}:pace:<endpoint>`, kept by pace.lua and release.lua): when
-- its next free send slot opens (Unix µs, Redis clock; `now` when it is open already) and the
-- spacing of its slots (µs; nil when unknown: the slot an older release took, value '1'). The
-- key outlives that slot by PACE_KEPT_MS, so a lane looked at late still knows its spacing; an
-- idle endpoint's then expires.
local PACE_KEPT_MS = 60000
local function pace_schedule(key, now)
  local v = redis.call('GET', key)
  if not v then
    return now, nil
  end
  local at, every = string.match(v, '^(%d+):(%d+)$')
  if at then
    return math.max(now, tonumber(at)), tonumber(every)
  end
  return now + math.max(0, redis.call('PTTL', key)) * 1000, nil
end

-- Records that an endpoint's slots up to (not including) `nxt` (Unix µs) are taken.
local function pace_taken(key, nxt, every)
  local expire = math.ceil(nxt / 1000) + PACE_KEPT_MS
  redis.call('SET', key, string.format('%.0f:%.0f', nxt, every), 'PXAT', string.format('%.0f', expire))
end

-- Takes `job` off the processing list `list`; false when it is no longer there (its lease ran
-- out and another worker runs it): a job is finished once, by the worker that holds it.
local function claimed(list, job)
  return redis.call('LREM', list, 1, job) == 1
end

-- Fair share (queue layout version 2, layout_version.rs): fresh work that is not urgent waits in
-- a flow, one list per tenant (events) and one per endpoint (deliveries); the ring (`flows`)
-- names every flow that holds work, once. Urgent share (version 3): urgent work (critical and
-- high findings, failed scans) waits in urgent flows the same way, named in a ring of their own
-- that every take serves before the other flows; before version 3 it goes to the front of the
-- ready list. Which a shard writes: the version its layout hash (`layout`) records, which the
-- scripts that write work read once. Version 1 (and no record: a new deployment no worker has
-- started on, or one the previous release ran) writes the ready list, which every release
-- reads.
local function layout_version(layout)
  return tonumber(redis.call('HGET', layout, 'version') or '1') or 1
end

-- The urgent flows' ring, beside the flows ring `ring` (`…:flows` → `…:uflows`; keys.rs
-- `urgent_flows`).
local function urgent_ring(ring)
  return string.sub(ring, 1, #ring - 5) .. 'uflows'
end

-- Runs `cmd` on `key` with `values` in chunks of at most `step` (Lua's stack caps how many
-- values one call may take; keep `step` even for field-value pairs). Answers the last reply
-- (nil for no values).
local function chunked(cmd, key, values, step)
  local reply, i = nil, 1
  while i <= #values do
    local j = math.min(i + step - 1, #values)
    reply = redis.call(cmd, key, unpack(values, i, j))
    i = j + 1
  end
  return reply
end

-- Gathers `job` for flow `flow` in `into` (flow -> its jobs, in order), noting in `order` each
-- flow the first time it comes: a batch then pushes each flow once (`flow_push`).
local function flow_group(into, order, flow, job)
  local jobs = into[flow]
  if not jobs then
    jobs = {}
    into[flow] = jobs
    order[#order + 1] = flow
  end
  jobs[#jobs + 1] = job
end

-- Appends `jobs` to flow `flow` (FIFO), naming it in the ring when it was empty.
local function flow_push(ring, flow, jobs)
  local n = chunked('RPUSH', flow, jobs, 500) or 0
  if n == #jobs and n > 0 then
    redis.call('RPUSH', ring, flow)
  end
end

-- Takes up to `max` jobs from the flows in turn (round robin: the ring is rotated, each flow
-- giving up to an equal share of `max` a turn) onto the back of list `to`. A flow emptied
-- leaves the ring; so does a name whose key is not a list (written by hand: its jobs, if any,
-- are not ours to guess at; Redis's log says so). Returns the jobs, in the order taken.
local function flow_take(ring, to, max)
  local got = {}
  local flows = redis.call('LLEN', ring)
  if flows == 0 or max <= 0 then
    return got
  end
  local share = math.max(1, math.ceil(max / flows))
  local visits = 0
  while #got < max and visits < max + flows do
    visits = visits + 1
    -- The flow whose turn it is goes to the back of the ring: the ring's last entry, below.
    local flow = redis.call('LMOVE', ring, ring, 'LEFT', 'RIGHT')
    if not flow then
      break
    end
    local want = math.min(share, max - #got)
    local jobs = redis.pcall('LPOP', flow, want)
    if type(jobs) == 'table' and jobs.err then
      redis.log(redis.LOG_WARNING, 'entraguard: flow ' .. flow .. ' is not a list; dropped from ' .. ring)
      jobs = false
    end
    if not jobs or #jobs < want or redis.call('LLEN', flow) == 0 then
      redis.call('RPOP', ring)
    end
    if jobs then
      redis.call('RPUSH', to, unpack(jobs))
      for _, job in ipairs(jobs) do
        got[#got + 1] = job
      end
    end
  end
  return got
end

-- Keeps a worker blocked on the ready list (BLMOVE) awake to the flows' work: when the ready
-- list is empty and a flow holds work, the flows' next job goes onto it. Called after a push
-- into flows and after a take that emptied the ready list, so every idle worker is woken in
-- turn while work waits, with no polling.
local function seed(ready, ring)
  if redis.call('LLEN', ready) == 0 and #flow_take(urgent_ring(ring), ready, 1) == 0 then
    flow_take(ring, ready, 1)
  end
end

-- Takes up to `max` jobs onto the processing list `processing`: the ready list first (urgent
-- work before layout version 3, work handed back or released, and the flows' wake-ups: `seed`),
-- then the urgent flows in round robin (version 3: `urgent_ring(ring)`), then the other flows in
-- round robin (`ring`: fresh events and deliveries, version 2), then the retry list (a retry backlog never holds up a fresh
-- alert). Answers the endpoints' revision (`rev_key`, false on a shard other than 0: -1; 0 when
-- never written), then each job, or its length in its place when it is longer than `max_bytes`
-- (taken, not returned: the worker dead-letters it with `oversized.lua` without reading it).
-- `fetch.lua`, and the finishing scripts that take the next jobs in the same step
-- (`ack_delivered.lua`, `route.lua`).
local function take(ready, processing, retry, rev_key, max, max_bytes, ring)
  local out = {-1}
  if rev_key then
    out[1] = tonumber(redis.call('GET', rev_key) or '0')
  end
  local function add(job)
    if #job > max_bytes then
      out[#out + 1] = #job
    else
      out[#out + 1] = job
    end
  end
  local n = 0
  local function drain(list)
    while n < max do
      local job = redis.call('LMOVE', list, processing, 'LEFT', 'RIGHT')
      if not job then
        return
      end
      add(job)
      n = n + 1
    end
  end
  drain(ready)
  -- Then the urgent flows (layout version 3; an empty ring costs one LLEN).
  if n < max then
    for _, job in ipairs(flow_take(urgent_ring(ring), processing, max - n)) do
      add(job)
      n = n + 1
    end
  end
  if n < max then
    local want = max - n
    local got = flow_take(ring, processing, want)
    for _, job in ipairs(got) do
      add(job)
      n = n + 1
    end
    if #got == want then
      -- The ready list is empty (drained above) and the flows may hold more: the next job
      -- goes onto it for a worker blocked there (`seed`).
      flow_take(ring, ready, 1)
    end
  else
    -- Filled from the urgent flows or the ready list, which may be empty now (it may have held
    -- only the flows' last wake-up): the next one, if the flows hold work, urgent first.
    seed(ready, ring)
  end
  drain(retry)
  return out
end

-- What a delivered job says of its endpoint, once per endpoint and step (`ack_delivered.lua`,
-- `ack_retried.lua`): its breaker's count cleared when closed (a success ends a run of failures,
-- whichever worker counted them) and 1, or 2 when the breaker is open or half-open (the worker
-- reports the success, which closes it and drains the lane); 3 when it is closed and the lane
-- holds deliveries (the worker releases the oldest into the slot the delivery frees).
local function finished_at(breaker, lane)
  local b = redis.call('HMGET', breaker, 'state', 'failures')
  local state = b[1]
  local answer = 1
  if state == 'closed' then
    -- The count ends; the rest (generation, last interval, announcements) is the breaker's
    -- memory of its last closing, kept until the hash's own expiry.
    if b[2] then
      redis.call('HDEL', breaker, 'failures', 'last_error', 'trials', 'trials_until')
    end
  elseif state == 'open' or state == 'half_open' then
    answer = 2
  end
  if answer == 1 and redis.call('LLEN', lane) > 0 then
    answer = 3
  end
  return answer
end

-- Pushes `entry` onto an endpoint's Recent Deliveries list `key`, keeping the newest `keep`
-- entries for `ms` ms.
local function push_history(key, entry, keep, ms)
  redis.call('LPUSH', key, entry)
  redis.call('LTRIM', key, 0, tonumber(keep) - 1)
  redis.call('PEXPIRE', key, ms)
end

-- Event bodies kept once for the deliveries that wait in a lane or lie in the dead-letter queue
-- (`StoredDelivery` in job.rs): `bodies` (body id -> event JSON) and `refs` (body id -> count).
local function hold_body(bodies, refs, id, body)
  redis.call('HSETNX', bodies, id, body)
  redis.call('HINCRBY', refs, id, 1)
end

local function drop_body(bodies, refs, id)
  if redis.call('HINCRBY', refs, id, -1) <= 0 then
    redis.call('HDEL', refs, id)
    redis.call('HDEL', bodies, id)
  end
end

-- Where the reference of a stored delivery `job` (tagged `delivery_ref.v1`) sits: its first and
-- last byte and the body id it names; nil for any other job.
local REF_START = '{"type":"delivery_ref.v1",'
local REF = '"event":{"$ref":"'
local function ref_in(job)
  if string.sub(job, 1, #REF_START) ~= REF_START then
    return nil
  end
  local s, e = string.find(job, REF, #REF_START + 1, true)
  if not s then
    return nil
  end
  local close = string.find(job, '"}', e + 1, true)
  if not close then
    return nil
  end
  return s, close + 1, string.sub(job, e + 1, close - 1)
end

-- How a delivery job starts (`Job::encode` writes its tag first).
local DELIVERY_START = '{"type":"delivery.v1",'

-- `job` with the reference at `s`..`e` replaced by `body`: byte for byte the job the worker wrote.
local function with_body(job, s, e, body)
  return DELIVERY_START .. string.sub(job, #REF_START + 1, s - 1) .. '"event":' .. body
    .. string.sub(job, e + 1)
end

-- How a fresh delivery job (`DeliveryJob::new`, no attempt yet) ends.
local FRESH_END = ',"attempts":[],"replays":0}'

-- A fresh delivery `job` as a lane keeps it (`DeliveryJob::stored` in job.rs): its event replaced
-- by a reference to body id `id`, and the event's JSON; nil for any other job.
local function stored_of(job, id)
  if string.sub(job, 1, #DELIVERY_START) ~= DELIVERY_START or string.sub(job, -#FRESH_END) ~= FRESH_END then
    return nil
  end
  local s, e = string.find(job, ',"event":', #DELIVERY_START, true)
  if not s then
    return nil
  end
  return REF_START .. string.sub(job, #DELIVERY_START + 1, s) .. REF .. id .. '"}' .. FRESH_END,
    string.sub(job, e + 1, #job - #FRESH_END)
end

-- The full job of a stored delivery `job`, its reference dropped. Any other job comes back as it
-- is; so does a reference whose body is gone (the worker then dead-letters it with that reason).
local function unref(bodies, refs, job)
  local s, e, id = ref_in(job)
  if not s then
    return job
  end
  local body = redis.call('HGET', bodies, id)
  if not body then
    return job
  end
  drop_body(bodies, refs, id)
  return with_body(job, s, e, body)
end

-- A dead delivery's job, built from its entry's fields (`dead.lua` keeps no copy of it): byte
-- for byte the job serde writes for that `DeliveryJob` (ids hold no character JSON escapes).
local function delivery_job(entry, body, attempts, replays)
  local f = redis.call('HMGET', entry, 'delivery_id', 'endpoint_id')
  return '{"type":"delivery.v1","delivery_id":"' .. f[1] .. '","endpoint_id":"' .. f[2] .. '","event":'
    .. body .. ',"attempts":' .. attempts .. ',"replays":' .. replays .. '}'
end
