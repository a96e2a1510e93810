"""The Lua scripts of the Redis cache (infra/cache.py): the agent's versioned writes and a
read's one round trip. Run atomically by Redis."""

from __future__ import annotations

from course_management.infra.rate_limit import GCRA_FUNCTION

# KEYS: the entries. ARGV[1]: the TTL; then for each key: its mode ('1' = only if absent,
# a reader's fill; else only if newer than its version and seats sequence), version,
# seats sequence, the number of field/value items, and those items. One call for a batch.
PUT = """
local i, stored = 2, 0
for k = 1, #KEYS do
  local mode, v, s, n = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  local put = true
  if mode == '1' then
    put = redis.call('EXISTS', KEYS[k]) == 0
  else
    local current = redis.call('HMGET', KEYS[k], 'version', 'seq')
    if current[1] then
      local cv, cs = tonumber(current[1]), tonumber(current[2] or '-1')
      put = not (cv > v or (cv == v and cs >= s))
    end
  end
  if put then
    redis.call('HSET', KEYS[k], unpack(ARGV, i + 4, i + 3 + n))
    redis.call('EXPIRE', KEYS[k], ARGV[1])
    stored = stored + 1
  end
  i = i + 4 + n
end
return stored
"""

# KEYS: the caller's rate-limit key, the course, the enrollment ('' for a course read).
# ARGV: gcra()'s interval and tolerance ('' when the request is not charged here), and
# for a course read which body it wants (see below).
# Returns {limit or nil, course fields (+ body), enrollment {version, course_version,
# status, view or nil, state or nil}}; over budget, only {limit}.
SPEND_AND_GET = (
    GCRA_FUNCTION
    + """
local limit = false
if ARGV[1] ~= '' then
  limit = gcra(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
  if limit[1] == 0 then return {limit} end
end
if KEYS[3] == '' then
  -- ARGV[3]: which body: 'body' (with content keys), 'public' (without), or
  -- 'owner=<id>' (the caller's own course: the body; another's: the public one). The
  -- public body is '' when the course has no content key: then the body is the same.
  -- A co-instructor sees the body too: 'staff' holds a line "<role> TAB <id>" per
  -- member, each between newlines.
  local course = redis.call('HMGET', KEYS[2], 'version', 'seq', 'count', 'deleted', 'status',
                            'owner', 'tag', 'staff')
  local view = ARGV[3]
  if string.sub(view, 1, 6) == 'owner=' then
    local caller = string.sub(view, 7)
    local staff = course[8] or ''
    if course[6] == caller or string.find(staff, '\\nco_instructor\\t' .. caller .. '\\n', 1, true)
    then view = 'body' else view = 'public' end
  end
  local public = false
  if view ~= 'body' then public = redis.call('HGET', KEYS[2], 'public') end
  if public and public ~= '' then
    course[9] = ''
    course[10] = public
  else
    course[9] = redis.call('HGET', KEYS[2], 'body') or ''
  end
  return {limit, course}
end
local course = redis.call('HMGET', KEYS[2], 'version', 'seq', 'count', 'deleted', 'status',
                          'owner', 'tag', 'staff')
local e = redis.call('HMGET', KEYS[3], 'version', 'course_version', 'status', 'view',
                     'fresh_until')
-- ARGV[3] for an enrollment read: now (RFC 3339); the view is stale from 'fresh_until'
if e[1] and (e[2] ~= course[1] or (e[5] and e[5] ~= '' and e[5] <= ARGV[3])) then
  -- its view was drawn against another version of the course, or before a time lock
  -- opened: the record and the course
  e = {e[1], e[2], e[3], false, redis.call('HGET', KEYS[3], 'state')}
  course[9] = redis.call('HGET', KEYS[2], 'body')
  return {limit, course, e}
end
return {limit, course, {e[1], e[2], e[3], e[4]}}
"""
)
