-- (a) GET /health: no auth, no database. The framework's ceiling on this machine.
wrk.method = "GET"
wrk.path = "/health"
