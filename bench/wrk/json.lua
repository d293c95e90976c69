-- POST or PATCH bodies against ids read from a file (key results; objectives for creates),
-- round-robin; keeps each id's version from the answers so If-Match stays current. Env: EDM_WRK_MODE (create|patch|checkin), EDM_WRK_IDS,
-- EDM_WRK_BASE (path prefix), EDM_WRK_TOKEN, EDM_WRK_OBJECTIVE.
local mode = os.getenv("EDM_WRK_MODE")
local base = os.getenv("EDM_WRK_BASE")
local token = os.getenv("EDM_WRK_TOKEN")
local objective = os.getenv("EDM_WRK_OBJECTIVE")
local ids, versions, n, i, errors = {}, {}, 0, 0, 0

function setup(thread)
  thread:set("id", 0)
end

function init(args)
  local file = os.getenv("EDM_WRK_IDS")
  if file and file ~= "" then
    for line in io.lines(file) do
      n = n + 1
      ids[n] = line
      versions[line] = 1
    end
  end
  wrk.headers["Authorization"] = "Bearer " .. token
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  i = i + 1
  if mode == "create" then
    -- Round-robin over objectives (EDM_WRK_IDS), so concurrent creates roll up into different rows.
    local target = n > 0 and ids[(i % n) + 1] or objective
    return wrk.format("POST", base, nil, '{"objective_id":"' .. target .. '","title":"bench ' .. i .. '","target":100,"current":' .. (i % 100) .. '}')
  end
  local id = ids[(i % n) + 1]
  if mode == "patch" then
    -- wrk.format uses the table it is given instead of wrk.headers: repeat them.
    local headers = { ["If-Match"] = '"' .. versions[id] .. '"', ["Authorization"] = wrk.headers["Authorization"], ["Content-Type"] = "application/json" }
    return wrk.format("PATCH", base .. "/" .. id, headers, '{"current":' .. (i % 90) .. '}')
  end
  return wrk.format("POST", base .. "/" .. id .. "/check-ins", nil, '{"value":' .. (i % 90) .. ',"confidence":7}')
end

function response(status, headers, body)
  if status >= 300 then
    errors = errors + 1
    return
  end
  if mode == "patch" then
    local id = string.match(body, '"id":"(kr_[^"]+)"')
    local version = headers["etag"] or headers["ETag"]
    if id and version then versions[id] = tonumber(string.match(version, "%d+")) end
  end
end
