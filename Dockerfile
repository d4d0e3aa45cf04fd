# The server (`gatewayz serve`: every function's routes in one process) as a container image.
#
#     docker build -t gatewayz .
#     docker run -p 8000:8000 -e GATEWAYZ_ADMIN_KEY=... -e OPENAI_API_KEY=... -v gatewayz-data:/data gatewayz
#
# The runtime dependencies of pyproject.toml only (never the dev extras), on the Python of the
# Lambda functions (template.yaml: python3.12). The embedded default keeps its SQLite database on
# the /data volume; set GATEWAYZ_DATABASE_URL (PostgreSQL) and GATEWAYZ_REDIS_URL for more than one
# container. tests/test_dockerfile.py checks this file against the CLI and the README.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GATEWAYZ_DATABASE_URL=sqlite:////data/gatewayz.db

WORKDIR /app
# Dependencies first, from pyproject.toml alone, so a code change reuses this layer.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install --no-cache-dir --requirement /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The packages and the migrations that `gatewayz serve` applies on start (shared/store/migrate.py
# reads infra/migrations beside shared/). Compiled once here: a container's first request should
# not pay for it.
COPY shared ./shared
COPY functions ./functions
COPY infra/migrations ./infra/migrations
RUN pip install --no-cache-dir --no-deps --editable . \
    && python -m compileall -q shared functions \
    && useradd --system --uid 10001 --home-dir /app gatewayz \
    && mkdir /data && chown gatewayz /data

USER gatewayz
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"]
# 0.0.0.0: the container's own interface, published with -p. JSON lines on stderr for the
# platform's log collector (`docker logs`); the bootstrap admin key is never logged, so set
# GATEWAYZ_ADMIN_KEY.
CMD ["gatewayz", "serve", "--host", "0.0.0.0", "--port", "8000", "--log-format", "json"]
