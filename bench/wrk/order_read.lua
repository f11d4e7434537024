-- (b) GET /v1/orders/{id} as the buyer, rotating over the seeded orders.
-- Arguments (after --): <buyer token> <order id prefix> <number of seeded orders>
local ids = {}
local n = 0

init = function(args)
  wrk.headers["Authorization"] = "Bearer " .. args[1]
  for i = 1, tonumber(args[3]) do
    ids[i] = "/v1/orders/" .. args[2] .. i
  end
end

request = function()
  n = n + 1
  return wrk.format("GET", ids[(n % #ids) + 1])
end
