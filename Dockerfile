# syntax=docker/dockerfile:1
# The sidecar image: `docker build -t sms-router .` then
# `docker run -v $PWD/router.toml:/etc/sms-router/router.toml:ro -e ROUTER_... -p 8080:8080 sms-router`.
# Credentials come from the environment (see router.example.toml), never from the image.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY router ./router
COPY providers ./providers
COPY policies ./policies
RUN python -m venv /opt/sms-router \
    && /opt/sms-router/bin/pip install --no-cache-dir ".[server,celery]"

FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home sms-router
COPY --from=build /opt/sms-router /opt/sms-router
COPY router.example.toml /etc/sms-router/router.toml
ENV PATH=/opt/sms-router/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    ROUTER_SERVER__HOST=0.0.0.0 \
    ROUTER_SERVER__PORT=8080
USER 10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('ROUTER_SERVER__PORT', '8080') + '/livez', timeout=2)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "router", "serve", "--log-format", "json"]
CMD ["--config", "/etc/sms-router/router.toml"]
