-- ARGV: prefix, id, expected rev, data, server, state, type, owner, ended, state reason, fence mode,
--       fence server, fence epoch
local id = ARGV[2]
if not fence_ok(ARGV[11], ARGV[12], ARGV[13]) then return { 'fenced' } end
local old = session_side(id)
if old[5] == false then return { 'missing' } end
if old[5] ~= ARGV[3] then return { 'conflict' } end
local rev = tonumber(old[5]) + 1
write_session(id, ARGV[4], rev, ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], old)
return { 'ok', rev }
