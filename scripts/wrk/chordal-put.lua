-- wrk script: PUT of a 64-byte value to a random one of 100,000 keys
-- through Chordal's HTTP API (scripts/bench-durable.sh).
local value = string.rep("v", 64)
request = function()
    local key = string.format("k%06d", math.random(0, 99999))
    return wrk.format("PUT", "/v1/kv/" .. key, nil, value)
end
