-- Every tier of one request, checked and (only if all admit) consumed atomically.
-- KEYS: one per tier. ARGV: per tier `algorithm ("g" GCRA | "w" sliding window |
-- "c" GCRA charged unconditionally), count, period seconds, burst, cost` (GCRA: units
-- the request takes; 0 only asks whether any is left). Time is Redis's own (TIME), so instances with
-- skewed clocks still share one view. Returns per tier: allowed (1/0), remaining,
-- reset seconds, retry-after seconds (the last two as strings: Lua numbers become
-- integers on the way out).
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local out = {}
local writes = {}
local all = true
for i = 1, #KEYS do
  local base = (i - 1) * 5
  local algorithm = ARGV[base + 1]
  local count = tonumber(ARGV[base + 2])
  local period = tonumber(ARGV[base + 3])
  local burst = tonumber(ARGV[base + 4])
  local cost = tonumber(ARGV[base + 5])
  local allowed, remaining, reset, retry
  if algorithm == 'c' then
    local interval = period / count
    local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
    local new_tat = math.max(tat, now) + cost * interval
    redis.call('SET', KEYS[i], string.format('%.6f', new_tat), 'PX',
               math.ceil((new_tat - now) * 1000) + 1000)
    allowed, remaining, reset, retry = 1, 0, new_tat - now, 0
  elseif algorithm == 'g' then
    local interval = period / count
    local tolerance = burst * interval
    local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
    local start = math.max(tat, now)
    local new_tat = start + cost * interval
    local fits
    if cost > 0 then
      fits = new_tat - now <= tolerance + 1e-9
    else
      fits = start - now < tolerance - 1e-9
    end
    if fits then
      allowed = 1
      remaining = math.floor((tolerance - (new_tat - now)) / interval + 1e-9)
      reset = new_tat - now
      retry = 0
      if cost > 0 then
        writes[#writes + 1] = {'g', KEYS[i], new_tat, math.ceil((new_tat - now) * 1000) + 1000}
      end
    else
      allowed = 0
      remaining = 0
      reset = start - now
      retry = math.max(0, new_tat - tolerance - now)
    end
  else
    local state = redis.call('HMGET', KEYS[i], 'w', 'c', 'p')
    local window = tonumber(state[1] or '0')
    local current = tonumber(state[2] or '0')
    local previous = tonumber(state[3] or '0')
    local this = math.floor(now / period)
    if this ~= window then
      if this == window + 1 then previous = current else previous = 0 end
      current = 0
    end
    local elapsed = now - this * period
    local estimate = previous * (1 - elapsed / period) + current
    reset = period - elapsed
    if estimate + 1 <= count + 1e-9 then
      allowed = 1
      remaining = math.max(0, math.floor(count - estimate - 1 + 1e-9))
      retry = 0
      writes[#writes + 1] = {'w', KEYS[i], this, current + 1, previous,
                             math.ceil(period * 2000) + 1000}
    else
      allowed = 0
      remaining = 0
      if current + 1 > count then
        local fraction = 0
        if current > 0 then fraction = 1 - (count - 1) / current end
        retry = reset + math.max(0, fraction) * period
      else
        retry = math.max(0, (1 - (count - 1 - current) / previous) * period - elapsed)
      end
    end
  end
  if allowed == 0 then all = false end
  out[#out + 1] = allowed
  out[#out + 1] = remaining
  out[#out + 1] = tostring(reset)
  out[#out + 1] = tostring(retry)
end
if all then
  for _, w in ipairs(writes) do
    if w[1] == 'g' then
      redis.call('SET', w[2], string.format('%.6f', w[3]), 'PX', w[4])
    else
      redis.call('HSET', w[2], 'w', w[3], 'c', w[4], 'p', w[5])
      redis.call('PEXPIRE', w[2], w[6])
    end
  end
end
return out
