-- wrk script: the same load as chordal-put.lua against etcd's v3 JSON
-- gateway (POST /v3/kv/put, key and value in base64).
local chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(s)
    local out = {}
    for i = 1, #s, 3 do
        local a, b, c = s:byte(i, i + 2)
        local n = a * 65536 + (b or 0) * 256 + (c or 0)
        local q = {}
        for j = 3, 0, -1 do
            local k = math.floor(n / 64 ^ j) % 64 + 1
            q[#q + 1] = chars:sub(k, k)
        end
        if not b then q[3], q[4] = "=", "=" elseif not c then q[4] = "=" end
        out[#out + 1] = table.concat(q)
    end
    return table.concat(out)
end

local value = base64(string.rep("v", 64))
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
    local key = base64(string.format("k%06d", math.random(0, 99999)))
    local body = '{"key":"' .. key .. '","value":"' .. value .. '"}'
    return wrk.format("POST", "/v3/kv/put", nil, body)
end
