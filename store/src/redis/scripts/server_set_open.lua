-- ARGV: prefix, id, mode, deadline (ms since epoch; 'gentle' and 'finish' only).
-- An operator's state of a server: the open flag and the drain deadline ('0':
-- not draining), in the server's hash and durably in K_OPEN / K_DRAIN, which
-- outlive the report. Modes:
-- 'open', 'close': set the flag, ending any drain (opened: cancelled; forced
--   close: finished at once);
-- 'gentle': close without force, checked against the live counts in the same
--   step (see Servers::close_server): 'busy' (sessions, deadline '0', nothing
--   changed), 'closed' or 'draining' with the view;
-- 'finish': end the drain only if it is still due at `deadline`: 'ok' or 'no'.
local id, mode, deadline = ARGV[2], ARGV[3], ARGV[4]
local key = k_server(id)
local s = redis.call('HMGET', key, 'rev', 'open', 'drain')
if s[1] == false then
  if mode == 'finish' then return { 'no' } end
  return { 'missing' }
end
local drain = s[3] or '0'
local function set(open, until_ms)
  local before, before_reason = availability(id)
  redis.call('HSET', key, 'open', open, 'drain', until_ms, 'rev', tonumber(s[1]) + 1)
  redis.call('HSET', K_OPEN, id, open)
  if until_ms == '0' then
    redis.call('HDEL', K_DRAIN, id)
  else
    redis.call('HSET', K_DRAIN, id, until_ms)
  end
  touch(id)
  availability_changed(id, before, before_reason)
end
if mode == 'open' or mode == 'close' then
  local open = '0'
  if mode == 'open' then open = '1' end
  set(open, '0')
  return { 'ok', server_view(id) }
end
if mode == 'finish' then
  if drain == '0' or drain ~= deadline then return { 'no' } end
  set('0', '0')
  return { 'ok' }
end
local c = redis.call('HMGET', k_counts(id), 'console', 'virtual')
local busy = tonumber(c[1] or '0') + tonumber(c[2] or '0') > 0
if busy and deadline == '0' then return { 'busy' } end
if s[2] == '0' and drain == '0' then return { 'closed', server_view(id) } end
if not busy then
  set('0', '0')
  return { 'closed', server_view(id) }
end
set('0', deadline)
return { 'draining', server_view(id) }
