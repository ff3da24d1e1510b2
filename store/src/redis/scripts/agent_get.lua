-- ARGV: prefix, server. The owner while its lease is live, else nil.
local a = redis.call('HMGET', k_agent(ARGV[2]), 'owner', 'address', 'epoch', 'lease_until')
if a[3] == false or tonumber(a[4]) <= now_ms() then return false end
return a
