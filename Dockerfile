# vecstore server image: `docker compose up` (see docker-compose.yml) or
#   docker build -t vecstore . && docker run -p 8000:8000 -e VECSTORE_ADMIN_KEY=... -v vecstore-data:/data vecstore
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 vecstore \
    && useradd --system --uid 10001 --gid vecstore --no-create-home --shell /usr/sbin/nologin vecstore

WORKDIR /app
COPY pyproject.toml README.md ./
COPY vecstore ./vecstore
COPY migrations ./migrations
# A regular install: the Alembic scripts ship inside the package as vecstore.migrations.
RUN pip install --no-cache-dir . \
    && mkdir -p /data \
    && chown vecstore:vecstore /data

USER vecstore
VOLUME ["/data"]
EXPOSE 8000

# Exec form: the server is PID 1 and gets SIGTERM from `docker stop` (it then checkpoints indexes).
CMD ["vecstore", "serve", "--host", "0.0.0.0", "--port", "8000", "--data-dir", "/data"]
