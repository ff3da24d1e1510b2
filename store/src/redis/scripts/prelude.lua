-- Shared by every script (prepended in Rust). ARGV[1] is the key prefix.
-- Keys are derived from the prefix inside the scripts, so the backend needs
-- a standalone Redis (or a primary with replicas), not Redis Cluster.
local P = ARGV[1]
local DELETED = '4'
local CONSOLE = '1'
local VIRTUAL = '2'
local K_SESSIONS = P .. 'sessions'
local K_SERVERS = P .. 'servers'
local K_OPEN = P .. 'server-open'
local K_DRAIN = P .. 'server-drain'
local K_DELETED = P .. 'deleted'
local K_FLEET_REV = P .. 'fleet-rev'
local K_FLEET_CHANGES = P .. 'fleet-changes'
local K_FLEET_GEN = P .. 'fleet-generation'
local K_QUEUE_SEQ = P .. 'queue-seq'
local K_QUEUE_CLASSES = P .. 'queue-classes'
local K_QUEUE_DEADLINES = P .. 'queue-deadlines'
local K_EVENTS = P .. 'events'
-- How many events the stream keeps (events::EVENTS_RETAINED unless `SET <prefix>events-retained N`), and
-- the id of the newest event dropped ('0-0' or missing: none).
local K_EVENTS_RETAINED = P .. 'events-retained'
local K_EVENTS_DROPPED = P .. 'events-dropped'
local function k_queued(id) return P .. 'queued:' .. id end
local function k_queue_class(class) return P .. 'queue-class:' .. class end
local function k_queue_placed(class) return P .. 'queue-placed:' .. class end
local function k_session(id) return P .. 'session:' .. id end
local function k_server(id) return P .. 'server:' .. id end
local function k_server_sessions(id) return P .. 'server:' .. id .. ':sessions' end
local function k_counts(id) return P .. 'server:' .. id .. ':counts' end
local function k_agent(id) return P .. 'agent:' .. id end
local function k_epoch(id) return P .. 'agent-epoch:' .. id end

-- Integers as decimal text (tostring would print large numbers as 1e+12).
local function int(n) return string.format('%d', n) end

-- Milliseconds on the Redis clock: the one clock every lease is measured on.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Fence check: mode '' (none), 'owner' (epoch must be current) or
-- 'unowned' (no live lease may exist).
local function fence_ok(mode, server, epoch)
  if mode == '' then return true end
  local a = redis.call('HMGET', k_agent(server), 'epoch', 'lease_until')
  if mode == 'owner' then return a[1] ~= false and a[1] == epoch end
  return a[1] == false or tonumber(a[2]) <= now_ms()
end

-- Appends an event (events.rs) to the stream, in the same script as the change it reports. Fields:
-- k kind, s session, o owner, v server, st state, ps previous state, r reason, a availability,
-- d detail, q queue position.
local function emit(kind, session, owner, server, state, prev, reason, avail, detail, position)
  redis.call('XADD', K_EVENTS, '*', 'k', kind, 's', session or '', 'o', owner or '', 'v', server or '',
    'st', state or '', 'ps', prev or '', 'r', reason or '', 'a', avail or '', 'd', detail or '',
    'q', position or '')
  -- Trimmed in batches of 100, exactly, remembering the newest id dropped so a reader can be told.
  local keep = tonumber(redis.call('GET', K_EVENTS_RETAINED) or '100000')
  local len = redis.call('XLEN', K_EVENTS)
  if len >= keep + 100 then
    local dropped = redis.call('XRANGE', K_EVENTS, '-', '+', 'COUNT', len - keep)
    redis.call('XTRIM', K_EVENTS, 'MAXLEN', keep)
    redis.call('SET', K_EVENTS_DROPPED, dropped[#dropped][1])
  end
end

-- A server's operational availability (events::server_availability): 'AVAILABLE', '' or 'UNAVAILABLE'
-- and the first cause; nil, nil for a server not stored.
local function availability(id)
  local s = redis.call('HMGET', P .. 'server:' .. id, 'reachable', 'open', 'healthy')
  if s[1] == false then return nil, nil end
  if s[1] ~= '1' then return 'UNAVAILABLE', 'UNREACHABLE_AGENT' end
  if s[2] ~= '1' then return 'UNAVAILABLE', 'SERVER_CLOSED' end
  if s[3] ~= '1' then return 'UNAVAILABLE', 'UNHEALTHY_DCV_SERVER' end
  return 'AVAILABLE', ''
end

-- Emits a server.availability event if the server's availability is no longer `before`/`before_reason`
-- (what availability(id) said before the change).
local function availability_changed(id, before, before_reason)
  local now, reason = availability(id)
  if now == before and reason == before_reason then return end
  if now == nil then now, reason = 'UNAVAILABLE', 'SERVER_REMOVED' end
  emit('server.availability', '', '', id, '', '', reason, now, '', '')
end

-- Gives a server a new revision in the fleet change feed (placement's view).
local function touch(server)
  if server == '' or server == false then return end
  local rev = redis.call('INCR', K_FLEET_REV)
  redis.call('ZADD', K_FLEET_CHANGES, int(rev), server)
end

-- Adds delta to the live counts of a session's server; DELETED and unplaced
-- sessions are not counted. Any session write on a server touches it.
local function count(server, state, stype, owner, delta)
  touch(server)
  if server == '' or server == false or state == DELETED then return end
  local key = k_counts(server)
  if stype == CONSOLE then
    redis.call('HINCRBY', key, 'console', delta)
  elseif stype == VIRTUAL then
    redis.call('HINCRBY', key, 'virtual', delta)
  end
  if redis.call('HINCRBY', key, 'u:' .. owner, delta) <= 0 then
    redis.call('HDEL', key, 'u:' .. owner)
  end
end

-- The side fields of a stored session: server, state, type, owner, rev.
local function session_side(id)
  return redis.call('HMGET', k_session(id), 'server', 'state', 'type', 'owner', 'rev')
end

-- Moves a session's index entries and counts from `old` (side fields or
-- nil) to its new side fields, then stores it; a new session or a new
-- state is a session.state event with `reason` (the StateReason).
local function write_session(id, data, rev, server, state, stype, owner, ended, reason, old)
  if not old or old[2] ~= state then
    local prev = ''
    if old then prev = old[2] end
    emit('session.state', id, owner, server, state, prev, reason, '', '', '')
  end
  if old then
    count(old[1], old[2], old[3], old[4], -1)
    if old[1] ~= server and old[1] ~= '' then redis.call('SREM', k_server_sessions(old[1]), id) end
  end
  count(server, state, stype, owner, 1)
  if server ~= '' then redis.call('SADD', k_server_sessions(server), id) end
  if state == DELETED then
    redis.call('ZADD', K_DELETED, ended, id)
  else
    redis.call('ZREM', K_DELETED, id)
  end
  redis.call('ZADD', K_SESSIONS, 0, id)
  redis.call('HSET', k_session(id), 'data', data, 'rev', rev, 'server', server, 'state', state,
    'type', stype, 'owner', owner)
  -- A full write carries its own server and substate (see session_assign.lua).
  redis.call('HDEL', k_session(id), 'assigned')
end

-- Removes a session with its index entries and counts.
local function delete_session(id)
  local old = session_side(id)
  if old[5] == false then return false end
  count(old[1], old[2], old[3], old[4], -1)
  if old[1] ~= '' then redis.call('SREM', k_server_sessions(old[1]), id) end
  redis.call('ZREM', K_SESSIONS, id)
  redis.call('ZREM', K_DELETED, id)
  redis.call('DEL', k_session(id))
  return true
end

-- A server's record fields for the reader: data, rev, open, console, virtual,
-- drain deadline.
local function server_view(id)
  local s = redis.call('HMGET', k_server(id), 'data', 'rev', 'open', 'drain')
  if s[1] == false then return false end
  local c = redis.call('HMGET', k_counts(id), 'console', 'virtual')
  return { id, s[1], s[2], s[3], c[1] or '0', c[2] or '0', s[4] or '0' }
end
