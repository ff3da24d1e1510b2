-- ARGV: prefix, kind, session, owner, server, state, previous state, reason, availability, detail, position
-- A service's event (events.rs: permission changes, reaping warnings). Returns its id.
emit(ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11])
local last = redis.call('XREVRANGE', K_EVENTS, '+', '-', 'COUNT', 1)
return last[1][1]
