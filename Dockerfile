# Builder: turn the project and its runtime dependencies into wheels.
FROM python:3.11-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /src

# Dependencies first, from pyproject.toml alone, so that this layer survives source edits.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && pip wheel -w /wheels -r requirements.txt

COPY README.md ./
COPY matching_engine ./matching_engine
COPY api ./api
COPY migrations ./migrations
RUN pip wheel --no-deps -w /wheels .


# Runtime: the wheels only, no compilers, no dev extras, not root.
FROM python:3.11-slim

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# A bind mount, not COPY, so that the wheels never become a layer of the image.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels matching-engine

RUN groupadd --system --gid 999 engine \
    && useradd --system --uid 999 --gid engine --home-dir /app --no-create-home engine \
    && mkdir -p /app/data \
    && chown -R engine:engine /app

WORKDIR /app
ENV ME_DATA_DIR=/app/data

EXPOSE 8000

HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/livez', timeout=2)"]

USER engine

# Exec form so the server gets SIGTERM and runs its shutdown. One process: it owns the book.
CMD ["matching-engine", "serve", "--host", "0.0.0.0", "--port", "8000"]
