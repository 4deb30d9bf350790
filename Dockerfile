# syntax=docker/dockerfile:1
#
# The production image of the matching engine: docker build -t matching-engine .
# The schema is migrated by a one-shot `matching-engine migrate` (see docker-compose.yml), so the
# server starts with --no-migrate.

# Builder: turn the project and its runtime dependencies into wheels.
FROM python:3.11-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /src

# The project's wheel compiles the matching core with mypyc (setup.py): a C compiler, here only.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

# Dependencies first, from pyproject.toml alone, so that this layer survives source edits.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && pip wheel -w /wheels -r requirements.txt

COPY README.md setup.py ./
COPY matching_engine ./matching_engine
COPY api ./api
COPY migrations ./migrations
RUN pip wheel --no-deps -w /wheels .


# Runtime: the wheels only; no compilers, no dev extras, no source tree, not root.
FROM python:3.11-slim

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# A bind mount, not COPY, so that the wheels never become a layer of the image.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels matching-engine

# A fixed uid outside the range of the base image's system users, so that volume ownership is
# predictable on any host.
RUN groupadd --system --gid 10001 engine \
    && useradd --system --uid 10001 --gid engine --home-dir /app --no-create-home engine \
    && mkdir -p /app/data \
    && chown -R engine:engine /app

WORKDIR /app

# The local copy of the admin audit trail lives here (admin-audit.jsonl: mode changes made while
# the database is down wait in it), and the embedded SQLite journal when no ME_DATABASE_URL is
# set: keep it on a volume.
ENV ME_DATA_DIR=/app/data
VOLUME ["/app/data"]

EXPOSE 8000

# Liveness only: the server listens once recovery (snapshot + journal replay) is done, so a long
# recovery shows as "starting". Readiness (/readyz) is for load balancers, not for restarts.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/livez', timeout=2)"]

USER engine

# Exec form so the server is PID 1 and gets SIGTERM to run its shutdown. One process, one
# worker: the book lives in its memory.
CMD ["matching-engine", "serve", "--host", "0.0.0.0", "--port", "8000", "--no-migrate"]
