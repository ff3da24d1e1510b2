-- ARGV: prefix, mode, then: 'ids' id...; 'page' after limit; 'server' server id.
-- Returns id, data, rev, server, assigned for every existing session, flattened
-- (`assigned`: placed by session_assign.lua since the last full write).
local mode = ARGV[2]
local ids
if mode == 'ids' then
  ids = {}
  for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
elseif mode == 'page' then
  local from = '-'
  if ARGV[3] ~= '' then from = '(' .. ARGV[3] end
  ids = redis.call('ZRANGEBYLEX', K_SESSIONS, from, '+', 'LIMIT', 0, tonumber(ARGV[4]))
else
  ids = redis.call('SMEMBERS', k_server_sessions(ARGV[3]))
end
local out = {}
for _, id in ipairs(ids) do
  local s = redis.call('HMGET', k_session(id), 'data', 'rev', 'server', 'assigned')
  if s[1] ~= false then
    out[#out + 1] = id
    out[#out + 1] = s[1]
    out[#out + 1] = s[2]
    out[#out + 1] = s[3] or ''
    out[#out + 1] = s[4] or ''
  end
end
return out
