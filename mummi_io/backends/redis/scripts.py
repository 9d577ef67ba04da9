"""Lua scripts that change one shard atomically (a value and its index entry together).

Every script gets ``KEYS[1]`` = the shard's index SET and ``KEYS[2]`` = its
chunk table; all keys of a shard share a hash tag, so each script runs on one
node (one slot in a cluster) and Redis runs it atomically.
"""

# Delete the chunks of a value that was stored in pieces (see layout.py).
_DROP_CHUNKS = r"""
local function drop_chunks(table_key, value_key, key)
  local entry = redis.call('HGET', table_key, key)
  if entry then
    redis.call('HDEL', table_key, key)
    local generation, count = string.match(entry, '^(%S+) (%d+)$')
    for c = 0, tonumber(count) - 1 do
      redis.call('DEL', value_key .. '\0' .. generation .. '\0' .. c)
    end
  end
end
"""

#: KEYS[3..n+2] value keys; ARGV[1..n] keys, ARGV[n+1..2n] values.
WRITE = _DROP_CHUNKS + r"""
local n = #KEYS - 2
local chunked = redis.call('HLEN', KEYS[2]) > 0
for i = 1, n do
  redis.call('SET', KEYS[i + 2], ARGV[n + i])
  if chunked then drop_chunks(KEYS[2], KEYS[i + 2], ARGV[i]) end
end
redis.call('SADD', KEYS[1], unpack(ARGV, 1, n))
return n
"""

#: KEYS[3..n+2] value keys; ARGV[1..n] keys.
DELETE = _DROP_CHUNKS + r"""
local n = #KEYS - 2
local chunked = redis.call('HLEN', KEYS[2]) > 0
redis.call('DEL', unpack(KEYS, 3))
redis.call('SREM', KEYS[1], unpack(ARGV))
if chunked then
  for i = 1, n do drop_chunks(KEYS[2], KEYS[i + 2], ARGV[i]) end
end
return n
"""

#: KEYS[3] value key; ARGV[1] key, ARGV[2] "<generation> <count>" of chunks already written.
COMMIT_CHUNKED = _DROP_CHUNKS + r"""
drop_chunks(KEYS[2], KEYS[3], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('DEL', KEYS[3])
redis.call('SADD', KEYS[1], ARGV[1])
return 1
"""
