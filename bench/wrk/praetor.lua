-- wrk script: Consul KV API on praetor.
--   wrk ... -s praetor.lua -- get KEYS    GET a random key of bench/k/0..KEYS-1
--   wrk ... -s praetor.lua -- put KEYS    PUT a 256-byte value to a random one
-- The keys are preloaded by kv.sh.

local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end

local requests = {}
local count

function init(args)
  local mode = args[1]
  count = tonumber(args[2])
  math.randomseed(os.time() * 1000 + (thread_id or 0))
  local value = {}
  for i = 1, 256 do
    value[i] = string.char(97 + (i * 7 + (thread_id or 0)) % 26)
  end
  value = table.concat(value)
  for i = 0, count - 1 do
    local path = "/v1/kv/bench/k/" .. i
    if mode == "get" then
      requests[i + 1] = wrk.format("GET", path)
    elseif mode == "put" then
      requests[i + 1] = wrk.format("PUT", path, nil, value)
    else
      error("mode must be get or put, not " .. tostring(mode))
    end
  end
end

function request()
  return requests[math.random(count)]
end
