-- ARGV: prefix, scope key, answer, TTL (ms). Stores the answer on the in-progress record, kept for the
-- TTL: 'OK', or 'GONE' when there is none (its claim expired, or it is done already).
local key = P .. 'idempotency:' .. ARGV[2]
if redis.call('HGET', key, 'done') ~= '0' then return 'GONE' end
redis.call('HSET', key, 'done', '1', 'answer', ARGV[3])
redis.call('PEXPIRE', key, ARGV[4])
return 'OK'
