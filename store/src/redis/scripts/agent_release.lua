-- ARGV: prefix, server, epoch. Only the current owner releases.
local key = k_agent(ARGV[2])
if redis.call('HGET', key, 'epoch') == ARGV[3] then redis.call('DEL', key) end
return 'OK'
