# stackprobe exporter image: slim Python, non-root, health-checked on /-/healthy.
#   docker build -t stackprobe .
#   docker run -p 18947:18947 -v $PWD/deploy/stackprobe.yml:/etc/stackprobe/config.yml:ro \
#       stackprobe run --config.file=/etc/stackprobe/config.yml
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY stackprobe ./stackprobe
COPY exporter ./exporter
COPY rules ./rules
COPY grafana ./grafana
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home stackprobe
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001
EXPOSE 18947
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:18947/-/healthy', timeout=4).status != 200)"]
ENTRYPOINT ["stackprobe"]
CMD ["run"]
