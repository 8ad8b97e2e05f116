# The image of the CPU stages: Python 3.11, the project's pinned requirements, lumbar_core, components
# and pipelines. Build from the repository root (see images/README.md):
#   docker build -f images/cpu.Dockerfile --build-arg VERSION=0.1.0 -t ghcr.io/lumbar-spine/lumbar:0.1.0-cpu .
FROM python:3.11.11-slim-bookworm

ARG VERSION=0.1.0
# Nothing is downloaded at run time: no hub lookups, pretrained weights only from a mounted path.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TORCH_HOME=/opt/lumbar/cache/torch \
    MPLCONFIGDIR=/tmp/matplotlib \
    LUMBAR_CODE_VERSION=${VERSION}

WORKDIR /opt/lumbar
COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock
COPY pyproject.toml README.md ./
COPY lumbar_core ./lumbar_core
COPY components ./components
COPY pipelines ./pipelines
RUN pip install --no-cache-dir --no-deps /opt/lumbar \
    && useradd --create-home --uid 10001 lumbar

USER 10001
WORKDIR /home/lumbar
CMD ["lumbar", "--help"]
