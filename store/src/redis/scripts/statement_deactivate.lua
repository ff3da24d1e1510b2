-- ARGV: prefix, statement id. Marks an existing statement inactive for good.
if redis.call('HEXISTS', P .. 'software-statements', ARGV[2]) == 0 then return 'NOTFOUND' end
redis.call('SADD', P .. 'software-statements-inactive', ARGV[2])
return 'OK'
