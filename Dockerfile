# One image for every process of the integrations hub; the command picks the process:
#   API         python -m api --host 0.0.0.0 --port 8000   (the default; https with HUB_API_TLS_*)
#   codec       uvicorn --factory api.codec_server:app --host 0.0.0.0 --port 8234
#   worker      python -m workers.main --role flows|warehouse|all          (or hub-worker --role ...)
#   migrations  python -m db.migrate
#   rules       hub-rules load FILE
# No secret is baked in: configuration comes from HUB_* variables at run time (see core/settings.py).
# The simulators (local stand-ins for Zoho, VTEX and the dealer CRMs) are not in it: the target
# `simulators` adds them for the compose stack (docker build --target simulators).
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HUB_STATE_DIR=/app/var

# An unprivileged user with a fixed uid, so orchestrators can check runAsNonRoot.
RUN groupadd --system --gid 10001 hub \
    && useradd --system --uid 10001 --gid hub --create-home --home-dir /home/hub --shell /usr/sbin/nologin hub

WORKDIR /app

# The project: pyproject.toml and the packages of [tool.setuptools.packages.find], plus the example rules.
COPY pyproject.toml ./
COPY api ./api
COPY contracts ./contracts
COPY workflows ./workflows
COPY activities ./activities
COPY workers ./workers
COPY core ./core
COPY clients ./clients
COPY db ./db
COPY warehouse ./warehouse
COPY dbt/dbt_project.yml ./dbt/dbt_project.yml
COPY dbt/profiles.yml ./dbt/profiles.yml
COPY dbt/models ./dbt/models
COPY dbt/macros ./dbt/macros
COPY dbt/tests ./dbt/tests
COPY cli ./cli
COPY config ./config
COPY deploy/dealers.compose.yaml ./deploy/dealers.compose.yaml

# Runtime dependencies only (no [dev] extra); HUB_STATE_DIR is the one folder the hub may write to.
RUN pip install --no-cache-dir . \
    && rm -rf build ./*.egg-info \
    && mkdir -p /app/var \
    && chown hub:hub /app/var

USER 10001:10001

# The compose stack's stand-ins: the project plus the simulators package, run from /app.
FROM base AS simulators
COPY simulators ./simulators
EXPOSE 8100
CMD ["python", "-m", "simulators", "--host", "0.0.0.0", "--port", "8100"]

# The product image, and the default target (the last stage).
FROM base AS hub
# 8000: API (/healthz, /readyz, /metrics); 8234: codec server; 9464: worker's metrics.
EXPOSE 8000 8234 9464

CMD ["python", "-m", "api", "--host", "0.0.0.0", "--port", "8000"]
