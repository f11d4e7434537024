-- (c) PUT /v1/orders/{id} as the marketplace, every request creating a NEW order.
-- Ids are "<run prefix>w<thread>-<n>": the prefix is fresh for each wrk run, the thread number comes from
-- setup() below, and n counts requests within the thread, so no two requests share an id.
-- Arguments (after --): <marketplace token> <run prefix> <seller id> <buyer id>
local threads = 0

setup = function(thread)
  threads = threads + 1
  thread:set("id", threads)
end

local prefix, seller, buyer
local n = 0

init = function(args)
  wrk.method = "PUT"
  wrk.headers["Authorization"] = "Bearer " .. args[1]
  wrk.headers["Content-Type"] = "application/json"
  prefix = args[2] .. "w" .. id .. "-"
  seller = args[3]
  buyer = args[4]
end

local body = '{"buyer_id": "%s", "seller_id": "%s", "currency": "EUR", '
  .. '"total": {"amount": 5000, "currency": "EUR"}, "commission": {"amount": 500, "currency": "EUR"}, '
  .. '"lines": [{"line_id": "l1", "sku": "SKU-1", "title": "Kettle", "quantity": 2, '
  .. '"unit_price": {"amount": 2500, "currency": "EUR"}}], '
  .. '"payment": {"provider": "stripe", "charge_id": "ch_%s"}}'

request = function()
  n = n + 1
  local order_id = prefix .. n
  return wrk.format(nil, "/v1/orders/" .. order_id, nil, string.format(body, buyer, seller, order_id))
end
