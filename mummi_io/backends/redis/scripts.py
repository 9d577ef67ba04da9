"""Lua scripts that change a group of shards on one node atomically.

A *group* is the shards of one command that live together: all shards a node
owns (independent nodes) or a single shard (Redis Cluster, where a script's
keys must share one slot). ``KEYS`` holds the index SET of each of the
group's ``m`` shards (its chunk table is that name followed by ``\0chunks``,
see layout.py). ``ARGV`` holds ``m``, the number of keys
of each shard, then the keys, grouped by shard in the same order. A value's
Redis key is its shard's index SET name followed by the key (layout.py), so
the scripts derive it instead of receiving it. The scripts use variadic
DEL/SADD/SREM, so the work per key is that of the native commands.
"""

# Shared head: parse the layout and define the (rare) clean-up of a value that
# had been stored in pieces (see layout.py).
_PRELUDE = r"""
local m = tonumber(ARGV[1])
local first_key = 2 + m
local n = #ARGV - first_key + 1
local function chunk_table(s) return KEYS[s] .. '\0chunks' end
local function drop_chunks(s, value_key, key)
  local entry = redis.call('HGET', chunk_table(s), key)
  if entry then
    redis.call('HDEL', chunk_table(s), key)
    local generation, count = string.match(entry, '^(%S+) (%d+)$')
    for c = 0, tonumber(count) - 1 do
      redis.call('DEL', value_key .. '\0' .. generation .. '\0' .. c)
    end
  end
end
local function each_shard(action)
  local done = 0
  for s = 1, m do
    local count = tonumber(ARGV[1 + s])
    action(s, done + 1, done + count)
    done = done + count
  end
end
local function clean_chunks(s, from, to)
  if redis.call('HLEN', chunk_table(s)) > 0 then
    for i = from, to do
      local key = ARGV[first_key + i - 1]
      drop_chunks(s, KEYS[s] .. key, key)
    end
  end
end
"""

#: Index n keys whose values were just stored with MSET (values never pass
#: through Lua: copying them in and out of the interpreter costs about eight
#: times the MSET itself). Also drops the pieces of a value stored chunked.
INDEX = _PRELUDE + r"""
each_shard(function(s, from, to)
  redis.call('SADD', KEYS[s], unpack(ARGV, first_key + from - 1, first_key + to - 1))
  clean_chunks(s, from, to)
end)
return n
"""

#: Delete n keys: DEL their values, remove them from their shards' index SETs.
DELETE = _PRELUDE + r"""
each_shard(function(s, from, to)
  local value_keys = {}
  for i = from, to do value_keys[#value_keys + 1] = KEYS[s] .. ARGV[first_key + i - 1] end
  redis.call('DEL', unpack(value_keys))
  redis.call('SREM', KEYS[s], unpack(ARGV, first_key + from - 1, first_key + to - 1))
  clean_chunks(s, from, to)
end)
return n
"""

#: One key whose pieces are written: KEYS = index SET, chunk table, value key;
#: ARGV = key, "<generation> <count>".
COMMIT_CHUNKED = r"""
local entry = redis.call('HGET', KEYS[2], ARGV[1])
if entry then
  local generation, count = string.match(entry, '^(%S+) (%d+)$')
  for c = 0, tonumber(count) - 1 do
    redis.call('DEL', KEYS[3] .. '\0' .. generation .. '\0' .. c)
  end
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('DEL', KEYS[3])
redis.call('SADD', KEYS[1], ARGV[1])
return 1
"""

#: For each key, atomically: ``1, value`` (stored plain), ``2, "<generation> <count>"``
#: (stored in pieces), or ``0, false`` (missing). Values pass through Lua, so this
#: runs only for the keys a plain MGET did not find.
VALUE_OR_CHUNKS = _PRELUDE + r"""
local out = {}
each_shard(function(s, from, to)
  for i = from, to do
    local key = ARGV[first_key + i - 1]
    local value = redis.call('GET', KEYS[s] .. key)
    if value then
      out[#out + 1] = 1
      out[#out + 1] = value
    else
      local entry = redis.call('HGET', chunk_table(s), key)
      out[#out + 1] = entry and 2 or 0
      out[#out + 1] = entry or false
    end
  end
end)
return out
"""

#: KEYS: the index SETs of the group's shards; ARGV: as above (m, counts, keys).
EXISTS = r"""
local m = tonumber(ARGV[1])
local found = {}
local at = 2 + m
for s = 1, m do
  local count = tonumber(ARGV[1 + s])
  if count > 0 then
    local answers = redis.call('SMISMEMBER', KEYS[s], unpack(ARGV, at, at + count - 1))
    for _, answer in ipairs(answers) do found[#found + 1] = answer end
  end
  at = at + count
end
return found
"""
