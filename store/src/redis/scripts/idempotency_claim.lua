-- ARGV: prefix, scope key, body SHA-256, claim TTL (ms). Claims the key when no live record holds it
-- (Redis expiry removes dead ones), else reports the live record: {'CLAIMED'}, {'INPROGRESS'},
-- {'MISMATCH'} (another body) or {'DONE', answer}.
local key = P .. 'idempotency:' .. ARGV[2]
local record = redis.call('HMGET', key, 'body', 'done', 'answer')
if not record[1] then
  redis.call('HSET', key, 'body', ARGV[3], 'done', '0')
  redis.call('PEXPIRE', key, ARGV[4])
  return {'CLAIMED'}
end
if record[1] ~= ARGV[3] then return {'MISMATCH'} end
if record[2] == '1' then return {'DONE', record[3]} end
return {'INPROGRESS'}
