# The connector image, built from the wheel (`docker build -t loyalty-connector .`).
# Stage 1 builds the project's wheel and the wheels of its dependencies at the versions the
# suite runs on (constraints.txt); anything that needs a compiler stays in this stage.
FROM python:3.11-slim AS build
WORKDIR /src
COPY constraints.txt ./
RUN pip install --no-cache-dir -c constraints.txt build
COPY pyproject.toml README.md LICENSE ./
COPY connector ./connector
COPY schemas ./schemas
RUN python -m build --wheel --outdir /dist . \
 && pip wheel --no-cache-dir -c constraints.txt --wheel-dir /dist \
    "$(ls /dist/loyalty_connector-*.whl)[rocksdb,fast]"

# Stage 2: only the installed wheels, no sources, no build tools; runs as an unprivileged user.
FROM python:3.11-slim
RUN useradd --system --uid 10001 --user-group --home-dir /app --create-home connector \
 && mkdir /data && chown 10001:10001 /data
COPY --from=build /dist /tmp/dist
RUN pip install --no-cache-dir --no-index --find-links /tmp/dist "loyalty-connector[rocksdb,fast]" \
 && rm -rf /tmp/dist
USER 10001:10001
WORKDIR /app
ENV CONNECTOR_DATA_DIR=/data \
    CONNECTOR_LOG_FORMAT=json \
    PYTHONUNBUFFERED=1
VOLUME ["/data"]
# bridge (CONNECTOR_BRIDGE_PORT) and worker (CONNECTOR_WEB_PORT)
EXPOSE 8080 6066
# whichever of the two runs in this container answers /healthz
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["loyalty-connector", "healthcheck"]
ENTRYPOINT ["loyalty-connector"]
CMD ["--help"]
