# Greenlight server image. Build from a checkout, naming the commit it is built from:
#   docker build --build-arg GREENLIGHT_COMMIT="$(git rev-parse HEAD)" -t greenlight .
# `docker run --rm greenlight greenlight --version` then prints the version and that commit.
#
# The base is pinned by digest (the tag alone moves with every Debian or Python patch), so a
# rebuild starts from the same bytes. To move it: `docker buildx imagetools inspect
# python:3.11-slim-bookworm`, take the index digest, put it here, rebuild and run the tests.
FROM python:3.11-slim-bookworm@sha256:528257d48c1da0dcecc2e725d1ae34498d60c965f1241e39cd6a85a8859bdf84

ARG GREENLIGHT_COMMIT=""
LABEL org.opencontainers.image.title="greenlight" \
      org.opencontainers.image.description="GraphQL API server that gates continuous deployment behind image approvals" \
      org.opencontainers.image.revision="${GREENLIGHT_COMMIT}"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GREENLIGHT_LOG_FORMAT=json

RUN groupadd --system --gid 10001 greenlight \
 && useradd --system --uid 10001 --gid greenlight --home-dir /app --shell /usr/sbin/nologin greenlight

WORKDIR /app
# Dependencies from the runtime lock only: exact versions, each file checked by its hash.
COPY requirements/runtime.txt ./requirements/runtime.txt
RUN pip install --require-hashes --no-deps -r requirements/runtime.txt
COPY pyproject.toml README.md ./
COPY greenlight ./greenlight
# The commit goes into the package (greenlight.build reads it), since the image has no .git.
RUN printf '%s\n' "${GREENLIGHT_COMMIT}" > greenlight/BUILD_COMMIT \
 && pip install --no-deps --no-build-isolation . \
 && rm -rf build greenlight.egg-info \
 && mkdir -p /data && chown greenlight:greenlight /data

USER 10001:10001
# SQLite lives on the /data volume unless GREENLIGHT_DATABASE_URL points at PostgreSQL.
ENV GREENLIGHT_DATABASE_URL=sqlite:///data/greenlight.sqlite3
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"]

CMD ["greenlight", "serve", "--host", "0.0.0.0", "--port", "8000"]
