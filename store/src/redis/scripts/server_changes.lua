-- ARGV: prefix, after revision, limit, generation to create if none exists
-- Returns generation, current revision, more ('1'/'0'), then per changed
-- server 9 fields: id, feed revision, present ('1'/'0'), and when present
-- the reader's data, rev, open, console, virtual, drain (else empty strings).
local gen = redis.call('GET', K_FLEET_GEN)
if gen == false then
  gen = ARGV[4]
  redis.call('SET', K_FLEET_GEN, gen)
end
local current = redis.call('GET', K_FLEET_REV) or '0'
local limit = tonumber(ARGV[3])
local rows = redis.call('ZRANGEBYSCORE', K_FLEET_CHANGES, '(' .. ARGV[2], '+inf', 'WITHSCORES', 'LIMIT', 0, limit + 1)
local found = #rows / 2
local more = '0'
if found > limit then
  more = '1'
  found = limit
end
local out = { gen, current, more }
for i = 1, found do
  local id, rev = rows[2 * i - 1], rows[2 * i]
  out[#out + 1] = id
  out[#out + 1] = rev
  local view = server_view(id)
  if view then
    out[#out + 1] = '1'
    for j = 2, 7 do out[#out + 1] = view[j] end
  else
    for _ = 1, 7 do out[#out + 1] = '' end
    out[#out - 6] = '0'
  end
end
return out
