FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY connector ./connector
COPY schemas ./schemas
RUN pip install --no-cache-dir -c constraints.txt -e '.[rocksdb,fast]'
USER nobody
ENTRYPOINT ["loyalty-connector"]
