-- ARGV: prefix, client id, server id. Binds an agent client to the server id
-- of its first hello, or checks the binding: one client per server id and
-- one server id per client.
local client, server = ARGV[2], ARGV[3]
if redis.call('HEXISTS', P .. 'agent-clients', client) == 0 then return 'NOTFOUND' end
local bound = redis.call('HGET', P .. 'agent-client-servers', client)
if bound then
  if bound == server then return 'OK' end
  return 'CONFLICT'
end
local holder = redis.call('HGET', P .. 'agent-servers', server)
if holder and holder ~= client then return 'CONFLICT' end
redis.call('HSET', P .. 'agent-client-servers', client, server)
redis.call('HSET', P .. 'agent-servers', server, client)
return 'OK'
