# syntax=docker/dockerfile:1

# The crawl service's production image: gunicorn with aiohttp's worker, as a
# non-root user, configured only through CRAWLER_* and GUNICORN_* variables
# (see crawler/settings.py and gunicorn.conf.py).
#
# Both stages use the same base image, because the virtualenv built in the
# first stage links to that image's /usr/local/bin/python3.11. Every
# dependency is installed from a wheel, so neither stage needs a compiler.

FROM python:3.11.16-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv

# The locked dependencies first, in their own layer, so that a change to the
# project's code does not reinstall them. --require-hashes rejects any file
# whose hash is not in requirements.lock, and --only-binary=:all: rejects
# source distributions, which would need a compiler.
WORKDIR /src
COPY requirements.lock ./
RUN /opt/venv/bin/pip install --no-cache-dir --require-hashes \
        --only-binary=:all: --no-deps -r requirements.lock

COPY pyproject.toml README.md ./
COPY crawler ./crawler
COPY web ./web
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps . \
    && /opt/venv/bin/pip uninstall --yes pip setuptools


FROM python:3.11.16-slim-bookworm AS runtime

LABEL org.opencontainers.image.title="crawler-service" \
      org.opencontainers.image.description="A concurrent web crawler and scraper, run as a service" \
      org.opencontainers.image.licenses="MIT"

# A fixed numeric UID, so that `docker run --user` and Kubernetes'
# runAsNonRoot can check it. /data holds the SQLite store of a container
# started without CRAWLER_STORE_URL; compose.yaml uses MongoDB instead.
RUN groupadd --system --gid 10001 crawler \
    && useradd --system --uid 10001 --gid crawler --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin crawler \
    && install -d -o crawler -g crawler -m 0750 /data

COPY --from=build /opt/venv /opt/venv

WORKDIR /app
COPY gunicorn.conf.py scripts/healthcheck.py ./

# CRAWLER_HOST applies to `crawler serve`, GUNICORN_BIND to the default command.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GUNICORN_BIND=0.0.0.0:8080 \
    CRAWLER_HOST=0.0.0.0 \
    CRAWLER_STORE_URL=sqlite:////data/crawler.db

USER 10001:10001

EXPOSE 8080

# /healthz returns 200 while the process serves requests, whatever the state
# of the store, so a MongoDB outage does not make Docker restart every replica.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/app/healthcheck.py"]

# Exec form: gunicorn is PID 1 and receives SIGTERM from `docker stop` itself.
CMD ["gunicorn", "web.serve:app_factory", "-c", "gunicorn.conf.py"]
