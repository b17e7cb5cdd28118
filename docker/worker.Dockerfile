# The worker node image: `python -m modelfleet.worker` behind docker/entrypoint.py, which finds the
# task's address and node id (ECS task metadata, else the container's hostname) and runs the worker
# exactly as the local platform does. Build from the repository root:
#
#   docker build -f docker/worker.Dockerfile -t modelfleet-worker .                        # ONNX only
#   docker build -f docker/worker.Dockerfile --build-arg EXTRAS=torch -t modelfleet-worker:torch .
#
# The torch variant installs the CPU wheel from PyTorch's index (the default PyPI wheel carries CUDA).
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ARG EXTRAS=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY modelfleet ./modelfleet
COPY schemas ./schemas
COPY functions ./functions
RUN pip wheel --wheel-dir /wheels \
      --extra-index-url https://download.pytorch.org/whl/cpu \
      ".${EXTRAS:+[${EXTRAS}]}"

FROM python:${PYTHON_VERSION}-slim
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin modelfleet \
 && mkdir -p /var/lib/modelfleet/models /opt/modelfleet \
 && chown -R modelfleet:modelfleet /var/lib/modelfleet
COPY --from=build /wheels /wheels
RUN pip install --no-index --find-links /wheels /wheels/*.whl && rm -rf /wheels
COPY docker/entrypoint.py /opt/modelfleet/entrypoint.py

USER modelfleet
WORKDIR /var/lib/modelfleet
# 8081: HTTP (/healthz, /_sync, /infer); 8082: the framed data port the invoke router uses.
EXPOSE 8081 8082
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "/opt/modelfleet/entrypoint.py", "--health"]
ENTRYPOINT ["python", "/opt/modelfleet/entrypoint.py"]
