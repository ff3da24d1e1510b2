-- ARGV: prefix, ended before (ms, exclusive), limit
local ids = redis.call('ZRANGEBYSCORE', K_DELETED, '-inf', '(' .. ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do delete_session(id) end
return #ids
