-- ARGV: prefix, mode, then: 'ids' id...; 'page' after limit.
-- Returns id, data, rev, open, console count, virtual count, drain deadline per server, flattened.
local mode = ARGV[2]
local ids
if mode == 'ids' then
  ids = {}
  for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  local from = '-'
  if ARGV[3] ~= '' then from = '(' .. ARGV[3] end
  ids = redis.call('ZRANGEBYLEX', K_SERVERS, from, '+', 'LIMIT', 0, tonumber(ARGV[4]))
end
local out = {}
for _, id in ipairs(ids) do
  local view = server_view(id)
  if view then
    for _, field in ipairs(view) do out[#out + 1] = field end
  end
end
return out
