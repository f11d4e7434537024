# syntax=docker/dockerfile:1
# Two stages: build the locked virtualenv with uv, then a slim runtime with a non-root user.
# The install and start steps are deploy/install.sh and deploy/start.sh, which .ci/run also executes.

FROM python:3.11-slim AS build
ENV UV_PROJECT_ENVIRONMENT=/opt/venv UV_LINK_MODE=copy PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml uv.lock README.md alembic.ini ./
COPY deploy ./deploy
COPY alembic ./alembic
COPY app ./app
RUN sh deploy/install.sh

FROM python:3.11-slim AS runtime
RUN useradd --create-home --uid 10001 sav && mkdir -p /data/attachments && chown -R sav /data
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SAV_ENV=production \
    SAV_ATTACHMENTS_DIR=/data/attachments \
    SAV_HOST=0.0.0.0 \
    SAV_PORT=8000
USER sav
EXPOSE 8000
VOLUME ["/data"]
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"
STOPSIGNAL SIGTERM
CMD ["sh", "deploy/start.sh"]
