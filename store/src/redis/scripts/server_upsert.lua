-- ARGV: prefix, id, data, reachable, healthy, max virtual, max per user,
--       default open, fence mode, fence server, fence epoch
-- Stores an agent's report; keeps the stored open flag and drain deadline,
-- else the durable ones (a forgotten server returning), else the default
-- (and no drain).
local id = ARGV[2]
if not fence_ok(ARGV[9], ARGV[10], ARGV[11]) then return { 'fenced' } end
local key = k_server(id)
local before, before_reason = availability(id)
local s = redis.call('HMGET', key, 'rev', 'open', 'drain')
local rev, open, drain = 1, s[2], s[3] or '0'
if s[1] ~= false then
  rev = tonumber(s[1]) + 1
else
  open = redis.call('HGET', K_OPEN, id) or ARGV[8]
  drain = redis.call('HGET', K_DRAIN, id) or '0'
end
redis.call('HSET', key, 'data', ARGV[3], 'rev', rev, 'open', open, 'drain', drain, 'reachable', ARGV[4],
  'healthy', ARGV[5], 'max_virtual', ARGV[6], 'max_per_user', ARGV[7])
redis.call('ZADD', K_SERVERS, 0, id)
touch(id)
availability_changed(id, before, before_reason)
return { 'ok', server_view(id) }
