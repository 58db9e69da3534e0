-- wrk script: etcd's JSON gRPC gateway (v3 API).
--   wrk ... -s etcd.lua -- range KEYS   POST /v3/kv/range for a random key of bench/k/0..KEYS-1
--                                       (linearizable, etcd's default)
--   wrk ... -s etcd.lua -- srange KEYS  the same with "serializable": true (local read,
--                                       no ReadIndex round through Raft)
--   wrk ... -s etcd.lua -- put KEYS     POST /v3/kv/put of a 256-byte value to a random one
-- Keys and values travel base64-encoded, as the gateway wants.

local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local c1 = math.floor(n / 262144) % 64
    local c2 = math.floor(n / 4096) % 64
    local c3 = math.floor(n / 64) % 64
    local c4 = n % 64
    out[#out + 1] = alphabet:sub(c1 + 1, c1 + 1) .. alphabet:sub(c2 + 1, c2 + 1)
      .. (b and alphabet:sub(c3 + 1, c3 + 1) or "=")
      .. (c and alphabet:sub(c4 + 1, c4 + 1) or "=")
  end
  return table.concat(out)
end

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
  value = base64(table.concat(value))
  local headers = { ["Content-Type"] = "application/json" }
  for i = 0, count - 1 do
    local key = base64("bench/k/" .. i)
    if mode == "range" then
      requests[i + 1] = wrk.format("POST", "/v3/kv/range", headers,
        '{"key":"' .. key .. '"}')
    elseif mode == "srange" then
      requests[i + 1] = wrk.format("POST", "/v3/kv/range", headers,
        '{"key":"' .. key .. '","serializable":true}')
    elseif mode == "put" then
      requests[i + 1] = wrk.format("POST", "/v3/kv/put", headers,
        '{"key":"' .. key .. '","value":"' .. value .. '"}')
    else
      error("mode must be range, srange or put, not " .. tostring(mode))
    end
  end
end

function request()
  return requests[math.random(count)]
end
