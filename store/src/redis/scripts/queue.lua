-- ARGV: prefix, mode, then per mode:
--   push     id, class, requirements, type, owner, max wait ms, max size
--   heads    per class
--   claim    id, claim id, lease ms
--   expired  claim id, lease ms, limit
--   release  id, claim id
--   remove   id, then for a placed entry: window ms, samples
--   len
--   depths   (per class with entries: class, count, enqueued time of its oldest)
--   positions  window ms, then ids (per queued id: id, class, 1-based position, class entries,
--              placements within the window, ms since the oldest of them)
-- Entries are hashes (class, requirements, type, owner, enqueued, deadline,
-- seq, claim, until), ordered per class in a sorted set by sequence, and by
-- deadline in one more. A class's recent placement times are a list, newest
-- first, trimmed to the samples and expiring a window after the last one.
-- Replies: a status word, then 10 fields per entry:
-- id, class, requirements, type, owner, enqueued, deadline, seq, claim, until.
local mode = ARGV[2]
local now = now_ms()

local function fields(id)
  local e = redis.call('HMGET', k_queued(id), 'class', 'requirements', 'type', 'owner', 'enqueued', 'deadline',
    'seq', 'claim', 'until')
  if e[1] == false then return false end
  return { id, e[1], e[2], e[3], e[4], e[5], e[6], e[7], e[8] or '', e[9] or '0' }
end

local function claimed(e) return e[9] ~= '' and tonumber(e[10]) > now end

local function claim(id, claim_id, lease)
  redis.call('HSET', k_queued(id), 'claim', claim_id, 'until', int(now + lease))
  return fields(id)
end

local function append(out, e)
  for _, field in ipairs(e) do out[#out + 1] = field end
end

if mode == 'push' then
  local id, class = ARGV[3], ARGV[4]
  if redis.call('EXISTS', k_queued(id)) == 1 then return { 'exists' } end
  if redis.call('ZCARD', K_QUEUE_DEADLINES) >= tonumber(ARGV[9]) then return { 'full' } end
  local seq = redis.call('INCR', K_QUEUE_SEQ)
  local deadline = now + tonumber(ARGV[8])
  redis.call('HSET', k_queued(id), 'class', class, 'requirements', ARGV[5], 'type', ARGV[6], 'owner', ARGV[7],
    'enqueued', int(now), 'deadline', int(deadline), 'seq', int(seq), 'claim', '', 'until', '0')
  redis.call('ZADD', k_queue_class(class), int(seq), id)
  redis.call('SADD', K_QUEUE_CLASSES, class)
  redis.call('ZADD', K_QUEUE_DEADLINES, int(deadline), id)
  emit('queue.enqueued', id, ARGV[7], '', '', '', '', '', class, int(redis.call('ZCARD', k_queue_class(class))))
  local out = { 'ok' }
  append(out, fields(id))
  return out
elseif mode == 'heads' then
  local per = tonumber(ARGV[3])
  local out = { 'ok' }
  for _, class in ipairs(redis.call('SMEMBERS', K_QUEUE_CLASSES)) do
    local taken, start = 0, 0
    while taken < per do
      local ids = redis.call('ZRANGE', k_queue_class(class), start, start + per - 1)
      if #ids == 0 then break end
      for _, id in ipairs(ids) do
        local e = fields(id)
        if taken < per and e and not claimed(e) then
          append(out, e)
          taken = taken + 1
        end
      end
      start = start + per
    end
  end
  return out
elseif mode == 'claim' then
  local e = fields(ARGV[3])
  if not e or claimed(e) then return { 'ok' } end
  local out = { 'ok' }
  append(out, claim(ARGV[3], ARGV[4], tonumber(ARGV[5])))
  return out
elseif mode == 'expired' then
  local out = { 'ok' }
  local taken, limit = 0, tonumber(ARGV[5])
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', K_QUEUE_DEADLINES, '-inf', int(now))) do
    if taken >= limit then break end
    local e = fields(id)
    if e and not claimed(e) then
      append(out, claim(id, ARGV[3], tonumber(ARGV[4])))
      taken = taken + 1
    end
  end
  return out
elseif mode == 'release' then
  local key = k_queued(ARGV[3])
  if ARGV[4] == '' or redis.call('HGET', key, 'claim') ~= ARGV[4] then return { 'no' } end
  redis.call('HSET', key, 'claim', '', 'until', '0')
  return { 'yes' }
elseif mode == 'remove' then
  local id = ARGV[3]
  local class = redis.call('HGET', k_queued(id), 'class')
  if class == false then return { 'no' } end
  local rank = redis.call('ZRANK', k_queue_class(class), id)
  redis.call('DEL', k_queued(id))
  redis.call('ZREM', k_queue_class(class), id)
  -- The requests behind it moved up: a queue.position event for each now in the first 10 places
  -- (events::QUEUE_POSITION_EVENTS).
  if rank and rank < 10 then
    for i, other in ipairs(redis.call('ZRANGE', k_queue_class(class), rank, 9)) do
      local owner = redis.call('HGET', k_queued(other), 'owner') or ''
      emit('queue.position', other, owner, '', '', '', '', '', class, int(rank + i))
    end
  end
  redis.call('ZREM', K_QUEUE_DEADLINES, id)
  if redis.call('ZCARD', k_queue_class(class)) == 0 then redis.call('SREM', K_QUEUE_CLASSES, class) end
  if ARGV[4] then
    local placed = k_queue_placed(class)
    redis.call('LPUSH', placed, int(now))
    redis.call('LTRIM', placed, 0, tonumber(ARGV[5]) - 1)
    redis.call('PEXPIRE', placed, ARGV[4])
  end
  return { 'yes' }
elseif mode == 'positions' then
  local since = now - tonumber(ARGV[3])
  local out = { 'ok' }
  for i = 4, #ARGV do
    local id = ARGV[i]
    local class = redis.call('HGET', k_queued(id), 'class')
    local rank = class and redis.call('ZRANK', k_queue_class(class), id)
    if rank then
      local recent, oldest = 0, now
      for _, time in ipairs(redis.call('LRANGE', k_queue_placed(class), 0, -1)) do
        local t = tonumber(time)
        if t > since then
          recent = recent + 1
          if t < oldest then oldest = t end
        end
      end
      out[#out + 1] = id
      out[#out + 1] = class
      out[#out + 1] = rank + 1
      out[#out + 1] = redis.call('ZCARD', k_queue_class(class))
      out[#out + 1] = recent
      out[#out + 1] = now - oldest
    end
  end
  return out
elseif mode == 'depths' then
  local out = { 'ok' }
  for _, class in ipairs(redis.call('SMEMBERS', K_QUEUE_CLASSES)) do
    local first = redis.call('ZRANGE', k_queue_class(class), 0, 0)
    if #first > 0 then
      local enqueued = redis.call('HGET', k_queued(first[1]), 'enqueued') or '0'
      out[#out + 1] = class
      out[#out + 1] = redis.call('ZCARD', k_queue_class(class))
      out[#out + 1] = tonumber(enqueued)
    end
  end
  return out
end
return { 'ok', redis.call('ZCARD', K_QUEUE_DEADLINES) }
