-- ARGV: prefix, client id. Removes an agent client and its server binding.
local client = ARGV[2]
if redis.call('HDEL', P .. 'agent-clients', client) == 0 then return 'NOTFOUND' end
local server = redis.call('HGET', P .. 'agent-client-servers', client)
if server then
  redis.call('HDEL', P .. 'agent-client-servers', client)
  if redis.call('HGET', P .. 'agent-servers', server) == client then
    redis.call('HDEL', P .. 'agent-servers', server)
  end
end
return 'OK'
