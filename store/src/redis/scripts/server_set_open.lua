-- ARGV: prefix, id, open ('1' or '0'). The durable flag outlives the report.
local id = ARGV[2]
local key = k_server(id)
local rev = redis.call('HGET', key, 'rev')
if rev == false then return { 'missing' } end
redis.call('HSET', key, 'open', ARGV[3], 'rev', tonumber(rev) + 1)
redis.call('HSET', K_OPEN, id, ARGV[3])
touch(id)
return { 'ok', server_view(id) }
