-- ARGV: prefix, id, data, server, state, type, owner, ended, fence mode, fence server, fence epoch
local id = ARGV[2]
if not fence_ok(ARGV[9], ARGV[10], ARGV[11]) then return { 'fenced' } end
if redis.call('EXISTS', k_session(id)) == 1 then return { 'exists' } end
write_session(id, ARGV[3], 1, ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], nil)
return { 'ok', 1 }
