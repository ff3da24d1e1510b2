-- ARGV: prefix, scope key. Forgets the in-progress record, if any; a done one stays.
local key = P .. 'idempotency:' .. ARGV[2]
if redis.call('HGET', key, 'done') == '0' then redis.call('DEL', key) end
return 'OK'
