"""The Lua scripts of svc_live.room: each multi-step change to a session's shared state in
the state Valkey is one script (one round trip, atomic)."""

# Token bucket step: rate per second, burst; true, or false and the ms until a token.
_TAKE_STEP = """
local function take(key, rate, burst)
  local t = redis.call('TIME')
  local now = t[1] * 1000 + math.floor(t[2] / 1000)
  local b = redis.call('HMGET', key, 'tokens', 'at')
  local tokens, at = tonumber(b[1]) or burst, tonumber(b[2]) or now
  tokens = math.min(burst, tokens + (now - at) * rate / 1000)
  local ok = tokens >= 1
  if ok then tokens = tokens - 1 end
  redis.call('HSET', key, 'tokens', tostring(tokens), 'at', now)
  redis.call('PEXPIRE', key, math.ceil(burst / rate * 1000) + 1000)
  if ok then return true, 0 end
  return false, math.ceil((1 - tokens) * 1000 / rate)
end
"""

# The sequencer: assigns the next sequence, writes the event (sequence field first, then the
# body the caller serialized) into the history window, and returns the sequence. Refuses when
# the session is not live, so nothing is sequenced after the end event. KEYS: counter,
# history, state; ARGV: body, history size, 'force' (sequence even when not live).
_SEQUENCE_STEP = """
local function varint(n)
  local out = {}
  while n >= 128 do
    out[#out + 1] = string.char(n % 128 + 128)
    n = math.floor(n / 128)
  end
  out[#out + 1] = string.char(n)
  return table.concat(out)
end
local function sequence()
  local seq = redis.call('INCR', KEYS[1])
  local tag = varint(seq)
  redis.call('ZADD', KEYS[2], seq, string.char(8) .. tag .. ARGV[1])
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(tonumber(ARGV[2]) + 1))
  return seq, tag
end
"""
SEQUENCE = (
    _SEQUENCE_STEP
    + """
if redis.call('GET', KEYS[3]) ~= 'live' and ARGV[3] ~= 'force' then return 0 end
return (sequence())
"""
)

# A client event that is only a rate check and a session event (a broadcast, a chat line),
# applied in the sequencer's own round trip instead of four (remember the client event id,
# take a token, sequence, store the ack): on a pod busy writing streams every round trip
# waits a loop turn behind the writes, and these are what the session waits for.
# KEYS: counter, history, state, the client event id's key, the rate bucket (unused unless
# ARGV[5] is 'rate'); ARGV: body, history size, the Ack without its sequence, dedup seconds,
# 'rate' or '', rate per second, burst. Returns {sequence, ''}; {0, ''} when the session is
# not live; {-1, stored ack} for a repeated client event id (an empty ack while an earlier
# copy is still being applied); {-2, ms until a token} when rate-limited.
SEQUENCE_ONCE = (
    _TAKE_STEP
    + _SEQUENCE_STEP
    + """
local earlier = redis.call('GET', KEYS[4])
if earlier then return {-1, earlier} end
if redis.call('GET', KEYS[3]) ~= 'live' then return {0, ''} end
if ARGV[5] == 'rate' then
  local ok, wait = take(KEYS[5], tonumber(ARGV[6]), tonumber(ARGV[7]))
  if not ok then return {-2, wait} end
end
local seq, tag = sequence()
-- Ack.sequence is field 5 (varint): tag byte 0x28, then the same varint as the event's.
redis.call('SET', KEYS[4], ARGV[3] .. string.char(40) .. tag, 'EX', ARGV[4])
return {seq, ''}
"""
)

# Presence counts people, not connections: a student with two tabs (or two devices) is one
# participant. KEYS: connection expiries (zset), connection -> user (hash), user -> open
# connections (hash). Expired connections are pruned first, releasing their users.
_PRUNE = """
local function prune(now)
  local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
  for _, conn in ipairs(gone) do
    local user = redis.call('HGET', KEYS[2], conn)
    redis.call('HDEL', KEYS[2], conn)
    if user and redis.call('HINCRBY', KEYS[3], user, -1) <= 0 then
      redis.call('HDEL', KEYS[3], user)
    end
  end
  if #gone > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now) end
end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
"""

# Admit connection ARGV[1] of user ARGV[4] unless the session holds ARGV[3] other users.
# Returns the participant count after, or -1 when full.
JOIN = (
    _PRUNE
    + """
prune(now)
if redis.call('HEXISTS', KEYS[3], ARGV[4]) == 0 and
   redis.call('HLEN', KEYS[3]) >= tonumber(ARGV[3]) then
  return -1
end
if redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1]) == 1 then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
  redis.call('HINCRBY', KEYS[3], ARGV[4], 1)
end
return redis.call('HLEN', KEYS[3])
"""
)

# One connection leaves; its user stays present while another of their connections is open.
LEAVE = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
local user = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
if user and redis.call('HINCRBY', KEYS[3], user, -1) <= 0 then
  redis.call('HDEL', KEYS[3], user)
end
return 1
"""

# Refresh the expiry of present members (ZADD XX: a member that left is not brought back).
REFRESH = """
local t = redis.call('TIME')
local expiry = t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[1])
local n = 0
for i = 2, #ARGV do
  n = n + redis.call('ZADD', KEYS[1], 'XX', 'CH', expiry, ARGV[i])
end
return n
"""

# Participant count (distinct users) with expired connections pruned, and raised hands
# (KEYS[4]).
COUNT = (
    _PRUNE
    + """
prune(now)
return {redis.call('HLEN', KEYS[3]), redis.call('HLEN', KEYS[4])}
"""
)

# Token bucket: rate per second, burst; returns {1, 0} or {0, ms until a token}.
BUCKET = (
    _TAKE_STEP
    + """
local ok, wait = take(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
if ok then return {1, 0} end
return {0, wait}
"""
)

# Poll vote: replaces the voter's earlier choice. KEYS: open polls set, tally hash, votes
# hash; ARGV: poll id, voter, comma-joined option ids. Returns 0 if the poll is not open.
VOTE = """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then return 0 end
local old = redis.call('HGET', KEYS[3], ARGV[2])
if old then
  for opt in string.gmatch(old, '[^,]+') do redis.call('HINCRBY', KEYS[2], opt, -1) end
else
  redis.call('HINCRBY', KEYS[2], '', 1)
end
for opt in string.gmatch(ARGV[3], '[^,]+') do redis.call('HINCRBY', KEYS[2], opt, 1) end
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
return 1
"""

# Upvote (ARGV[3] = '1') or withdraw ('0'): KEYS: votes zset, voters set. Returns the vote
# count, -1 when the question is unknown or answered, -2 when nothing changed.
UPVOTE = """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return -1 end
local changed
if ARGV[3] == '1' then changed = redis.call('SADD', KEYS[2], ARGV[2])
else changed = redis.call('SREM', KEYS[2], ARGV[2]) end
if changed == 0 then return -2 end
local delta = 1
if ARGV[3] ~= '1' then delta = -1 end
return tonumber(redis.call('ZINCRBY', KEYS[1], delta, ARGV[1]))
"""
