-- ARGV: prefix, fence mode, fence server, fence epoch, then 8 per session: id, data, server, state, type,
-- owner, ended, state reason. All or nothing: when any id exists, nothing is written and the reply names it.
if not fence_ok(ARGV[2], ARGV[3], ARGV[4]) then return { 'fenced' } end
for i = 5, #ARGV, 8 do
  if redis.call('EXISTS', k_session(ARGV[i])) == 1 then return { 'exists', ARGV[i] } end
end
for i = 5, #ARGV, 8 do
  write_session(ARGV[i], ARGV[i + 1], 1, ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7],
    nil)
end
return { 'ok', 1 }
