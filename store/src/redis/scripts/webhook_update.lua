-- ARGV: prefix, id, data
-- Replaces a webhook subscription only if it still exists (a removed one stays removed): 1, else 0.
local key = P .. 'webhooks'
if redis.call('HEXISTS', key, ARGV[2]) == 0 then return 0 end
redis.call('HSET', key, ARGV[2], ARGV[3])
return 1
