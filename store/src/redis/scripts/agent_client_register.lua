-- ARGV: prefix, client id, software statement id, client record (protobuf).
-- Stores a new agent client only while its software statement exists and is
-- active, in one step, so a deactivation cannot race a registration.
local statement = ARGV[3]
if redis.call('HEXISTS', P .. 'software-statements', statement) == 0
  or redis.call('SISMEMBER', P .. 'software-statements-inactive', statement) == 1 then
  return 'NOTFOUND'
end
if redis.call('HSETNX', P .. 'agent-clients', ARGV[2], ARGV[4]) == 0 then return 'EXISTS' end
return 'OK'
