-- ARGV: prefix, after (an event id, exclusive), count
-- Returns the id of the newest event dropped from the stream ('0-0': none), the newest id in it ('' when
-- empty), then the entries after `after` as XRANGE gives them.
local dropped = redis.call('GET', K_EVENTS_DROPPED) or '0-0'
local newest = redis.call('XREVRANGE', K_EVENTS, '+', '-', 'COUNT', 1)
local last = ''
if #newest > 0 then last = newest[1][1] end
local entries = redis.call('XRANGE', K_EVENTS, '(' .. ARGV[2], '+', 'COUNT', ARGV[3])
return { dropped, last, entries }
