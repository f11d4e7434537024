#!/bin/sh
# Production install, shared by the Dockerfile and .ci/run so CI exercises exactly what the image does:
# uv from PyPI, then the locked runtime dependencies (no dev tools) into $UV_PROJECT_ENVIRONMENT.
set -eu
UV_VERSION=0.13.9
if ! command -v uv >/dev/null 2>&1; then
    python3 -m pip install --no-cache-dir --quiet "uv==${UV_VERSION}"
fi
uv sync --frozen --no-dev --compile-bytecode
