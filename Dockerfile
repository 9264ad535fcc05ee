# The matching worker. Kafka and Redis come from docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY matcher matcher
COPY models models
COPY streams streams
COPY bench bench
COPY samples samples
RUN pip install --no-cache-dir .
ENV VOLMATCH_LOG_LEVEL=INFO
CMD ["python", "-m", "streams", "worker", "--datadir", "/tmp/faust"]
