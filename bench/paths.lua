-- wrk script: send the paths given after `--` in turn, e.g. a Django page at a few
-- offsets and its stylesheet, as a browser's visits would mix them.
--     wrk ... -s paths.lua URL -- PATH [PATH ...]
local paths, next_path = {}, 1

function init(args)
    for i = 1, #args do
        paths[i] = args[i]
    end
    if #paths == 0 then
        paths[1] = wrk.path
    end
end

function request()
    local path = paths[next_path]
    next_path = next_path % #paths + 1
    return wrk.format(nil, path)
end
