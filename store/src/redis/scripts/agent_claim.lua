-- ARGV: prefix, server, owner, address, lease ms
-- Epochs only grow: a counter that never resets, seeded from the clock so
-- they keep growing even if Redis lost its data.
local server = ARGV[2]
local now = now_ms()
local epoch = redis.call('INCR', k_epoch(server))
if epoch < now then
  epoch = now
  redis.call('SET', k_epoch(server), int(epoch))
end
local lease_until = now + tonumber(ARGV[5])
redis.call('HSET', k_agent(server), 'owner', ARGV[3], 'address', ARGV[4], 'epoch', int(epoch),
  'lease_until', int(lease_until))
return { int(epoch), int(lease_until) }
