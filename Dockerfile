# ocpp-gateway container image.
#
#   docker build -t ocpp-gateway:dev .
#   docker run --rm -p 9000:9000 -p 9001:9001 --read-only --tmpfs /tmp \
#     -v "$PWD/my-gateway.yaml:/etc/ocpp-gateway/gateway.yaml:ro" ocpp-gateway:dev
#
# Two stages: the builder turns the project into a wheel (plus wheels of its runtime dependencies and the `speed`
# extra, uvloop) and installs them into a virtualenv; the runtime stage copies only that virtualenv. No compiler, no
# source tree, no pip cache in the final image. Everything is byte-compiled at build time, so the root filesystem can
# be mounted read-only (the process writes nothing to disk; give it a tmpfs on /tmp if a library ever wants one).
#
# PYTHON_IMAGE may be overridden (e.g. a digest-pinned or mirrored python:3.11-slim); both stages must use the same
# image because the virtualenv links to its interpreter.
ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# .dockerignore admits only what the wheel needs: pyproject.toml, README.md/LICENSE when present, gateway/ and the
# default config
COPY . .

# 1. a wheel of the project and of every runtime dependency (incl. the `speed` extra) -> /wheels
# 2. a virtualenv with exactly those, installed offline from /wheels (pip byte-compiles them on install)
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip wheel --no-cache-dir --wheel-dir /wheels ".[speed]" \
 && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links /wheels "ocpp-gateway[speed]" \
 && /opt/venv/bin/pip uninstall --yes pip setuptools wheel \
 && /opt/venv/bin/ocpp-gateway check-config /src/config/gateway.yaml

# ---------------------------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="ocpp-gateway" \
      org.opencontainers.image.description="OCPP-J WebSocket reverse proxy between EV chargers and CSMS backends" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONFAULTHANDLER=1 \
    PATH=/opt/venv/bin:$PATH

# a fixed, unprivileged uid/gid (Kubernetes runAsNonRoot can verify a numeric USER)
RUN groupadd --system --gid 10001 ocppgw \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin ocppgw

COPY --from=builder /opt/venv /opt/venv
# the default config (loopback admin port, demo backend): mount your own over it
COPY config/gateway.yaml /etc/ocpp-gateway/gateway.yaml

USER 10001:10001
WORKDIR /tmp

# 9000: chargers (ws[s]://HOST:9000/ocpp/<charger id>); 9001: admin API, /healthz, /readyz, /metrics
EXPOSE 9000 9001

# slim has no curl: use the interpreter. Assumes the admin listener on its default port 9001.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9001/healthz', timeout=4).status == 200 else 1)"]

# SIGTERM (the default stop signal): stop accepting, let in-flight CALLs finish (session.shutdown_grace_s), close
# chargers with 1001, exit 0. The process handles signals itself, so it can run as PID 1.
STOPSIGNAL SIGTERM
ENTRYPOINT ["ocpp-gateway"]
CMD ["run", "--config", "/etc/ocpp-gateway/gateway.yaml"]
