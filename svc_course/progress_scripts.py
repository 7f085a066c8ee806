"""The Lua scripts behind svc_course.progress_state, each one atomic step on the state Valkey.

Keys and fields are described in progress_state's module notes. The scripts name keys built
from their arguments (a member's hash, its marks), which a single server allows and a cluster
would need hash tags for.
"""

# A batch of samples (see `ProgressState.apply`). KEYS[1] the dirty set. ARGV: 1 the server's
# epoch, 2 the key prefix, then one packed sample each: "user video course position watched
# client_time now duration enrollment_ttl" (packed: the client's per-argument encoding is a
# measurable share of the hot path). An enrollment TTL of "0" means the enrollment mark must
# already exist; more sets it (the caller checked Postgres). Returns per sample "p w f t ca u"
# once applied, or "-1" (enrollment not known) / "-2" (the course not seeded in this server's
# life) / "-3" (not a sample): nothing of that sample is written then.
UPDATE = """
local epoch, prefix = ARGV[1], ARGV[2]
local out = {}
for i = 3, #ARGV do
  local user, video, course, pos, watched, ct, now, d, ttl = string.match(ARGV[i],
    '^(%S+) (%S+) (%S+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+)$')
  local reply
  if not user then
    reply = '-3'
  else
    local mark = prefix .. 'enr:' .. user .. ':' .. course
    if ttl == '0' and redis.call('EXISTS', mark) == 0 then
      reply = '-1'
    else
      if ttl ~= '0' then redis.call('SET', mark, '1', 'EX', ttl) end
      if redis.call('GET', prefix .. 'seeded:' .. user .. ':' .. course) ~= epoch then
        reply = '-2'
      end
    end
  end
  if not reply then
    local m = user .. ':' .. video
    local key = prefix .. m
    local cur = redis.call('HMGET', key, 'p', 'w', 'f', 't', 'ca')
    if not cur[2] then cur = {0, 0, 0, 0, 0} end
    local p, w, f, t, ca = tonumber(cur[1]), tonumber(cur[2]), tonumber(cur[3]),
      tonumber(cur[4]), tonumber(cur[5])
    pos, watched, ct, now, d = tonumber(pos), tonumber(watched), tonumber(ct), tonumber(now),
      tonumber(d)
    if ct >= t then p = pos; t = ct end
    if watched > w then w = watched end
    if pos > f then f = pos end
    if ca == 0 and d > 0 and w * 10 >= d * 9 then ca = now end
    redis.call('HSET', key, 'p', p, 'w', w, 'f', f, 't', t, 'ca', ca, 'c', course, 'd', d,
      'u', now)
    redis.call('PERSIST', key)
    redis.call('SADD', KEYS[1], m)
    reply = string.format('%d %d %d %d %d %d', p, w, f, t, ca, now)
  end
  out[#out + 1] = reply
end
return out
"""

# Merges a viewer's flushed rows of one course into their hashes and sets the seeded mark.
# KEYS[1] the mark; ARGV: 1 keep seconds, 2 "vp:<user>:", 3 course, 4 the server's epoch
# (the mark's value), then "video p w f t ca" per row. A hash that can expire lives at least
# a minute longer than the mark (covering a row flushed between the query and this script); a
# persistent (unflushed) one stays so.
SEED = """
local keep = tonumber(ARGV[1])
for i = 5, #ARGV do
  local video, p, w, f, t, ca = string.match(ARGV[i], '^(%S+) (%d+) (%d+) (%d+) (%d+) (%d+)$')
  local key = ARGV[2] .. video
  local ttl = redis.call('TTL', key)
  local cur = redis.call('HMGET', key, 'p', 'w', 'f', 't', 'ca')
  p, w, f, t, ca = tonumber(p), tonumber(w), tonumber(f), tonumber(t), tonumber(ca)
  if cur[2] then
    if tonumber(cur[4]) > t then p = tonumber(cur[1]); t = tonumber(cur[4]) end
    if tonumber(cur[2]) > w then w = tonumber(cur[2]) end
    if tonumber(cur[3]) > f then f = tonumber(cur[3]) end
    if tonumber(cur[5]) > 0 and (ca == 0 or tonumber(cur[5]) < ca) then ca = tonumber(cur[5]) end
  end
  redis.call('HSET', key, 'p', p, 'w', w, 'f', f, 't', t, 'ca', ca, 'c', ARGV[3])
  if ttl ~= -1 and ttl < keep + 60 then redis.call('EXPIRE', key, keep + 60) end
end
redis.call('SET', KEYS[1], ARGV[4], 'EX', math.max(keep - 60, 1))
return #ARGV - 4
"""

# Claims up to ARGV[3] members: first those whose lease expired (a flusher died or stalled),
# then fresh ones from the dirty set. Returns the lease token, then per member its name and
# hash fields, read in the same atomic step as the claim.
CLAIM = """
local limit = tonumber(ARGV[3])
local members = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, limit)
if #members < limit then
  local fresh = redis.call('SPOP', KEYS[1], limit - #members)
  for _, m in ipairs(fresh) do table.insert(members, m) end
end
local out = {ARGV[2]}
for _, m in ipairs(members) do
  redis.call('ZADD', KEYS[2], ARGV[2], m)
  local h = redis.call('HMGET', ARGV[4] .. m, 'c', 'p', 'w', 'f', 't', 'ca', 'u', 'd')
  table.insert(out, m)
  for i = 1, 8 do table.insert(out, h[i] or '') end
end
return out
"""

# After the commit: drop our leases (not one another flusher re-took after ours expired) and
# let a hash with no newer sample expire after ARGV[2] seconds; one written meanwhile is back
# in the dirty set and stays persistent.
ACK = """
local token = tonumber(ARGV[1])
local n = 0
for i = 3, #ARGV do
  local m = ARGV[i]
  local score = redis.call('ZSCORE', KEYS[2], m)
  if score and tonumber(score) == token then
    redis.call('ZREM', KEYS[2], m)
    score = false
    n = n + 1
  end
  if not score and redis.call('SISMEMBER', KEYS[1], m) == 0 then
    redis.call('EXPIRE', KEYS[3] .. m, ARGV[2])
  end
end
return n
"""


# KEYS[1] the traces hash; ARGV: 1 the limit, then members. Their traceparents, taken.
TAKE_TRACES = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
local found = {}
for i = 2, #ARGV do
  local tp = redis.call('HGET', KEYS[1], ARGV[i])
  if tp then
    found[#found + 1] = tp
    redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
if redis.call('HLEN', KEYS[1]) > tonumber(ARGV[1]) then redis.call('DEL', KEYS[1]) end
return found
"""

# Gives a claim back (a flush cancelled at shutdown): our leased members return to the dirty
# set at once instead of waiting for the lease to expire.
RELEASE = """
local token = tonumber(ARGV[1])
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[2], ARGV[i])
  if score and tonumber(score) == token then
    redis.call('ZREM', KEYS[2], ARGV[i])
    redis.call('SADD', KEYS[1], ARGV[i])
  end
end
return 1
"""
