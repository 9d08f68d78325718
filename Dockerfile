# hayhooks as a container image: gunicorn with one uvicorn worker per CPU (WEB_CONCURRENCY or
# HAYHOOKS_WORKERS to override), serving the pipelines in /pipelines.
#
#   docker build -t hayhooks:0.1.0 .
#   docker run --rm -p 1416:1416 -v "$PWD/examples/pipelines:/pipelines:ro" hayhooks:0.1.0
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HAYSTACK_TELEMETRY_ENABLED=False \
    HAYHOOKS_HOST=0.0.0.0 \
    HAYHOOKS_PORT=1416 \
    HAYHOOKS_PIPELINES_DIR=/pipelines

WORKDIR /app

# The package first (this layer changes only when the code does), then the gunicorn configuration.
COPY pyproject.toml README.md ./
COPY hayhooks ./hayhooks
RUN pip install . && rm -rf build hayhooks.egg-info
COPY gunicorn.conf.py ./

# A fixed numeric uid, so Kubernetes' runAsNonRoot can check it (deploy/kubernetes runs as 10001).
RUN groupadd --gid 10001 hayhooks \
    && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin hayhooks \
    && mkdir /pipelines \
    && chown hayhooks:hayhooks /pipelines
USER 10001:10001

EXPOSE 1416

# The standard library's HTTP client: no curl in the image.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('HAYHOOKS_PORT', '1416') + '/health', timeout=4)"]

CMD ["gunicorn", "-c", "gunicorn.conf.py"]
