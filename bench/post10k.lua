-- wrk: a 10 KB POST body for the echo scenario.
wrk.method = "POST"
wrk.body = string.rep("x", 10240)
wrk.headers["Content-Type"] = "application/octet-stream"
