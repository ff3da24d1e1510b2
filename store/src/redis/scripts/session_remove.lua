-- ARGV: prefix, id
delete_session(ARGV[2])
return 'OK'
