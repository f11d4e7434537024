#!/bin/sh
# Production start, shared by the Dockerfile and .ci/run: apply migrations, then serve.
# uvicorn handles SIGTERM gracefully (in-flight requests finish, up to 15 s).
set -eu
exec sav serve --migrate --host "${SAV_HOST:-0.0.0.0}" --port "${SAV_PORT:-8000}" --workers "${SAV_WORKERS:-1}"
