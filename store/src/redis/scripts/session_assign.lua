-- ARGV: prefix, session id, server id
-- Checks every placement rule and assigns in one step, so concurrent
-- placements from any number of processes never oversubscribe a host.
-- The stored bytes are not rewritten: the side fields `server` and
-- `assigned` (substate PENDING_PREPARATION) override them on read until the
-- next full write, so an assignment is one script call. Returns the status,
-- then the record's bytes and new revision.
local id, server = ARGV[2], ARGV[3]
local old = session_side(id)
if old[5] == false or old[2] ~= '1' or old[1] ~= '' then return { 'SESSION_NOT_PLACEABLE' } end
local s = redis.call('HMGET', k_server(server), 'open', 'reachable', 'healthy', 'max_virtual', 'max_per_user')
if s[1] == false then return { 'SERVER_NOT_FOUND' } end
if s[1] ~= '1' then return { 'SERVER_CLOSED' } end
if s[2] ~= '1' then return { 'UNREACHABLE_AGENT' } end
if s[3] ~= '1' then return { 'UNHEALTHY_DCV_SERVER' } end
local c = redis.call('HMGET', k_counts(server), 'console', 'virtual', 'u:' .. old[4])
local consoles, virtuals, owned = tonumber(c[1] or 0), tonumber(c[2] or 0), tonumber(c[3] or 0)
if old[3] == CONSOLE and consoles > 0 then return { 'CONSOLE_SESSION_EXISTS' } end
local max_virtual, max_per_user = tonumber(s[4]), tonumber(s[5])
if old[3] == VIRTUAL and max_virtual > 0 and virtuals >= max_virtual then return { 'SERVER_FULL' } end
if max_per_user > 0 and owned >= max_per_user then return { 'USER_SESSION_LIMIT' } end
local rev = tonumber(old[5]) + 1
count(old[1], old[2], old[3], old[4], -1)
count(server, old[2], old[3], old[4], 1)
redis.call('SADD', k_server_sessions(server), id)
redis.call('HSET', k_session(id), 'server', server, 'rev', int(rev), 'assigned', '1')
emit('session.placed', id, old[4], server, old[2], old[2], '', '', '', '')
return { 'ok', redis.call('HGET', k_session(id), 'data'), int(rev) }
