# The image of the GPU stages: NVIDIA's CUDA runtime base, Python 3.11, the same pinned requirements as
# the CPU image and the venv. Build from the repository root (see images/README.md):
#   docker build -f images/gpu.Dockerfile --build-arg VERSION=0.1.0 -t ghcr.io/lumbar-spine/lumbar:0.1.0-gpu .
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04

ARG VERSION=0.1.0
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TORCH_HOME=/opt/lumbar/cache/torch \
    MPLCONFIGDIR=/tmp/matplotlib \
    LUMBAR_CODE_VERSION=${VERSION} \
    PATH=/opt/venv/bin:${PATH}

# Ubuntu's python3.11 packages; their versions follow the base image's (pinned) snapshot.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3.11 -m venv /opt/venv

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
