-- wrk script for the post1m scenario: every request is a POST of 1 MiB,
-- which bench_apps.echo reads from wsgi.input and sends back.
-- wrk adds the Content-Length header itself when a body is set.
wrk.method = "POST"
wrk.body = string.rep("x", 1048576)
wrk.headers["Content-Type"] = "application/octet-stream"
