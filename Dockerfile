# ml_app image. The build stage turns the requirements into wheels, installs them into a
# virtualenv and trains the demo models (fixed seeds, converted to ONNX); the final stage holds
# only that virtualenv (with the ONNX converter, without pip), the application and the trained
# model store, and runs as an unprivileged user.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
# Dependencies first, so this layer is rebuilt only when the requirements change. The training
# set (requirements-train.txt: the runtime set plus skl2onnx and onnx) converts the demo models to
# ONNX while they are written, and stays: a version registered in the running container (admin
# API or `python -m ml_app models register`) is converted the same way. Only the registering
# process imports them (the admin API registers in a child process), never a serving worker.
COPY requirements.txt requirements-train.txt ./
# The libraries' own test suites (~65 MB) are not needed to serve.
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip wheel --quiet --wheel-dir /wheels -r requirements-train.txt \
 && /opt/venv/bin/pip install --quiet --no-index --find-links /wheels -r requirements-train.txt \
 && find /opt/venv/lib -depth -type d -name tests -path '*/site-packages/*' -exec rm -rf {} +
COPY ml_app ml_app
COPY model model
# Then pip itself goes: nothing is installed at run time.
RUN /opt/venv/bin/python -m model.train --store /app/model/store \
 && /opt/venv/bin/pip uninstall --quiet --yes pip setuptools \
 && /opt/venv/bin/python -m compileall -q ml_app

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PORT=8000 \
    ML_APP_STORE=/app/model/store \
    PROMETHEUS_MULTIPROC_DIR=/tmp/ml_app-metrics \
    ML_APP_DRAIN_FILE=/tmp/ml_app-metrics/draining \
    ML_APP_API_KEYS_FILE=/run/secrets/ml_app-keys/keys.json
# API keys are on: predictions need a key from the keys file, mounted from a secret at the path
# above (docker run -v "$PWD/deploy/keys:/run/secrets/ml_app-keys:ro", compose's secret, the
# k8s Secret). Without the file every keyed request is 401 and the log says why; health stays up.
# A fixed numeric uid, so orchestrators can verify runAsNonRoot without a passwd lookup. The
# Prometheus multiprocess directory must be writable by that user before Gunicorn starts
# (gunicorn.conf.py creates it when a fresh /tmp is mounted over the image's). So must the payload
# log's: a new named volume mounted there takes the owner of the image's folder.
RUN groupadd --gid 10001 ml_app \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin ml_app \
 && install -d -o ml_app -g ml_app -m 0700 "$PROMETHEUS_MULTIPROC_DIR" \
 && install -d -o ml_app -g ml_app -m 0750 /var/lib/ml_app/payloads
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app/ml_app ml_app
COPY --from=build /app/model/store model/store
COPY gunicorn.conf.py ./
COPY deploy/healthcheck.py deploy/healthcheck.py
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "deploy/healthcheck.py"]
# Gunicorn is PID 1 and handles SIGTERM itself: it stops accepting, lets in-flight requests finish
# (GUNICORN_GRACEFUL_TIMEOUT, 30 s) and exits 0. Give `docker stop` more than that (-t 40).
CMD ["gunicorn", "-c", "gunicorn.conf.py"]
