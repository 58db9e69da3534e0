-- GET /v1/health/service/svc-<random>?passing over a catalog of `services`
-- services (argument 1).
local services = 1000

function init(args)
  services = tonumber(args[1] or "1000")
  math.randomseed(os.time())
end

function request()
  local s = math.random(0, services - 1)
  return wrk.format("GET", "/v1/health/service/svc-" .. s .. "?passing")
end
