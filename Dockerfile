# Greenlight server image. Build: docker build -t greenlight .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    GREENLIGHT_LOG_FORMAT=json

RUN groupadd --system --gid 10001 greenlight \
 && useradd --system --uid 10001 --gid greenlight --home-dir /app --shell /usr/sbin/nologin greenlight

WORKDIR /app
COPY pyproject.toml README.md ./
COPY greenlight ./greenlight
RUN pip install . && mkdir -p /data && chown greenlight:greenlight /data

USER 10001:10001
# SQLite lives on the /data volume unless GREENLIGHT_DATABASE_URL points at PostgreSQL.
ENV GREENLIGHT_DATABASE_URL=sqlite:///data/greenlight.sqlite3
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"]

CMD ["greenlight", "serve", "--host", "0.0.0.0", "--port", "8000"]
