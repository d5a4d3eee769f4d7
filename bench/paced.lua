-- wrk: each connection pauses this many milliseconds (the first script
-- argument, after `--`) between a response and its next request, so every
-- server is offered the same rate below its capacity and their latencies
-- compare at the same load (the paced real-app scenarios in run.py).
local pause = 0

function init(args)
   pause = tonumber(args[1]) or 0
end

function delay()
   return pause
end
