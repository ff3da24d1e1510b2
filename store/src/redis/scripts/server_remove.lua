-- ARGV: prefix, id, mode: 'remove' (admin: the open flag and drain go too) or
--       'forget' (reaper: keeps them), expected rev (forget only).
local id, mode = ARGV[2], ARGV[3]
local key = k_server(id)
if mode == 'forget' then
  local rev = redis.call('HGET', key, 'rev')
  if rev == false then return 'ok' end
  if rev ~= ARGV[4] then return 'conflict' end
  if not fence_ok('unowned', id, '') then return 'fenced' end
else
  redis.call('HDEL', K_OPEN, id)
  redis.call('HDEL', K_DRAIN, id)
end
local before, before_reason = availability(id)
if redis.call('DEL', key) == 1 then
  touch(id)
  availability_changed(id, before, before_reason)
end
redis.call('ZREM', K_SERVERS, id)
return 'ok'
