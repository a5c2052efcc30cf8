# One image for every Marquee service: `marquee serve SERVICE` (see deploy/ and the README).
# Build: docker build -t marquee:0.1.0 .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# -- build: resolve the locked dependencies into a virtual environment ----------------------
FROM ${PYTHON_IMAGE} AS build
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /app
RUN pip install --no-cache-dir "uv==0.13.9"
# Dependencies first, in a layer of their own: it is rebuilt only when the lock changes.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --locked --no-install-project --no-editable --extra nats --extra otel
COPY src ./src
COPY plugins ./plugins
RUN uv sync --locked --no-editable --extra nats --extra otel

# -- run: the environment and nothing else (no compiler, no uv, no sources) ----------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="marquee" \
      org.opencontainers.image.description="Marquee ticketing platform: marquee serve SERVICE"
RUN groupadd --system --gid 10001 marquee \
    && useradd --system --uid 10001 --gid marquee --no-create-home --home-dir /var/lib/marquee marquee \
    && mkdir -p /var/lib/marquee \
    && chown marquee:marquee /var/lib/marquee
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MARQUEE_HOST=0.0.0.0 \
    MARQUEE_PORT=8000 \
    MARQUEE_DATA_DIR=/var/lib/marquee \
    MARQUEE_LOG_FORMAT=json
WORKDIR /var/lib/marquee
USER 10001:10001
EXPOSE 8000
# Liveness of whichever service runs here; orchestrators also probe /readyz.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('MARQUEE_PORT', '8000'), timeout=2)"]
ENTRYPOINT ["marquee"]
CMD ["serve", "gateway"]
