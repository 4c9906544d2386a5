# dmbot in a container: build the wheel and its dependencies into a virtualenv, then copy
# that virtualenv into a slim runtime that runs as a fixed non-root user.
#   docker build -t dmbot .      (then see docker-compose.yml, or the README's docker run line)

FROM python:3.12-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv --without-pip /opt/venv \
 && python -m pip --python /opt/venv/bin/python install /wheels/*.whl


FROM python:3.12-slim
LABEL org.opencontainers.image.title="dmbot" \
      org.opencontainers.image.description="Watch a Mastodon account's direct messages and act on them by rules you write in YAML." \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="docker.io/library/python:3.12-slim"

RUN groupadd --system --gid 10001 dmbot \
 && useradd --system --uid 10001 --gid dmbot --no-create-home --home-dir /data \
      --shell /usr/sbin/nologin dmbot \
 && mkdir -p /data /config \
 && chown dmbot:dmbot /data

COPY --from=build /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DMBOT_DATA_DIR=/data \
    DMBOT_RULES_FILE=/config/rules.yaml \
    DMBOT_LOG_FORMAT=json

# /data holds the SQLite state (cursor, outbox): keep it on a volume. /config holds
# rules.yaml: mount the directory (read-only), not the file, so edits are seen.
VOLUME ["/data"]
WORKDIR /data
USER 10001:10001

# dmbot is PID 1 and handles SIGTERM itself: it finishes the action in flight, keeps the
# state consistent and exits 0 (give `docker stop` at least 10 s).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["dmbot", "healthcheck"]
ENTRYPOINT ["dmbot"]
CMD ["run"]
