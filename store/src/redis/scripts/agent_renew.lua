-- ARGV: prefix, server, epoch, lease ms
local key = k_agent(ARGV[2])
local a = redis.call('HMGET', key, 'owner', 'address', 'epoch')
if a[3] == false or a[3] ~= ARGV[3] then return false end
local lease_until = now_ms() + tonumber(ARGV[4])
redis.call('HSET', key, 'lease_until', int(lease_until))
return { a[1], a[2], a[3], int(lease_until) }
