-- wrk: random 512 KiB Range requests within a file of SIZE bytes, starting
-- at multiples of ALIGN (1: anywhere).  Keeps the headers given with -H.
local size = tonumber(os.getenv("SIZE"))
local align = tonumber(os.getenv("ALIGN") or "1")
math.randomseed(os.time())
request = function()
  local n = math.floor((size - 524288) / align)
  local a = math.random(0, n) * align
  local h = {}
  for k, v in pairs(wrk.headers) do h[k] = v end
  h["Range"] = "bytes=" .. a .. "-" .. (a + 524287)
  return wrk.format("GET", nil, h)
end
