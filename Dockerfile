# syntax=docker/dockerfile:1
#
# Two images from one file; pick one with --target:
#
#   docker build --target gpu -t openai-stt:gpu .   # CUDA 12.8 + cuDNN 9, Ubuntu 24.04, Python 3.12
#   docker build --target cpu -t openai-stt:cpu .   # python:3.11-slim-bookworm, CPU only
#
# A build without --target builds the last stage, `gpu`.
#
# The two stages below differ in these lines only (scripts/lint_deploy.sh fails on any other
# difference); Docker cannot give stages with different bases a common parent, so the steps they
# share are in scripts/image_setup.sh and the rest is written out twice.
#
#   |                      | cpu                                  | gpu                                    |
#   |----------------------|--------------------------------------|----------------------------------------|
#   | FROM                 | PYTHON_IMAGE (Debian, Python 3.11)   | CUDA_IMAGE (Ubuntu 24.04, Python 3.12) |
#   | TORCH_INDEX_URL      | PyTorch's CPU wheel index            | "" (PyPI's torch, the CUDA build)      |
#   | /etc/stt/config.yaml | configs/default.yaml (embedded base) | configs/gpu.yaml (large-v3, pyannote)  |
#   | health start period  | 2m                                   | 15m (the first start downloads 3 GB)   |
#
# CTranslate2 4.x wheels on PyPI (4.5 and later) need CUDA 12 and cuDNN 9, and the recent ones are
# built with CUDA 12.8, so the host driver must support CUDA 12.8 (driver >= 570). Ubuntu 22.04
# only ships Python 3.10 and the project needs 3.11 or newer, hence Ubuntu 24.04 (Python 3.12).
#
# Build args, besides the two base images (all used by the build only):
#   TORCH_INDEX_URL  extra package index for torch; empty: PyPI only
#   PIP_CERT         CA bundle for pip, e.g. behind a TLS-inspecting proxy. Pass the file as a build
#                    secret, so that it never lands in a layer: --build-arg PIP_CERT=/run/secrets/pip_cert
#                    --secret id=pip_cert,src=/etc/ssl/certs/ca-certificates.crt
#   PIP_FIND_LINKS   a folder (or URL) of local wheels for pip
# scripts/container_test.sh builds and runs the cpu image end to end. See deploy/README.md.

ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# Paths, for both images:
#   /opt/stt                 the venv with the server; root's, read-only to the server
#   /etc/stt/config.yaml     the server config (a default is baked in; mount your own over it)
#   /etc/stt/keys/keys.json  the API key file (mount the directory, so that a revoked key stops
#                            working without a restart: the server re-reads the file on change)
#   /var/lib/stt             STT_DATA_DIR, a volume: the usage ledger (usage.db) and models/
#   /var/lib/stt/models      model cache: assembled embedded weights, hub downloads, HF_HOME

# ---------------------------------------------------------------------------------------------
# cpu. Each RUN depends only on what was copied before it: a change to the code does not reinstall
# the dependencies. The venv is built in place (no build stage): copying 2.3 GB between stages
# would only cost time and disk.
FROM ${PYTHON_IMAGE} AS cpu
COPY scripts/image_setup.sh scripts/fix_torchaudio_cpu.py /src/scripts/
RUN bash /src/scripts/image_setup.sh os
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_CERT=""
ARG PIP_FIND_LINKS=""
COPY pyproject.toml constraints.txt /src/
RUN --mount=type=secret,id=pip_cert bash /src/scripts/image_setup.sh deps
COPY README.md /src/
COPY app /src/app
COPY engines /src/engines
RUN --mount=type=secret,id=pip_cert bash /src/scripts/image_setup.sh project
COPY configs/default.yaml /etc/stt/config.yaml
ENV PATH=/opt/stt/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STT_CONFIG=/etc/stt/config.yaml \
    STT_DATA_DIR=/var/lib/stt \
    STT_KEYS_FILE=/etc/stt/keys/keys.json \
    STT_HOST=0.0.0.0 \
    STT_PORT=8000 \
    HF_HOME=/var/lib/stt/models/huggingface \
    HF_HUB_DISABLE_TELEMETRY=1
USER 10001:10001
WORKDIR /var/lib/stt
VOLUME ["/var/lib/stt"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=2m --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('STT_PORT', '8000'), timeout=4)"]
ENTRYPOINT ["python", "-m", "app"]
CMD ["serve"]

# ---------------------------------------------------------------------------------------------
# gpu: the same stage on the CUDA base, with the differences listed at the top.
FROM ${CUDA_IMAGE} AS gpu
COPY scripts/image_setup.sh scripts/fix_torchaudio_cpu.py /src/scripts/
RUN bash /src/scripts/image_setup.sh os
ARG TORCH_INDEX_URL=""
ARG PIP_CERT=""
ARG PIP_FIND_LINKS=""
COPY pyproject.toml constraints.txt /src/
RUN --mount=type=secret,id=pip_cert bash /src/scripts/image_setup.sh deps
COPY README.md /src/
COPY app /src/app
COPY engines /src/engines
RUN --mount=type=secret,id=pip_cert bash /src/scripts/image_setup.sh project
COPY configs/gpu.yaml /etc/stt/config.yaml
ENV PATH=/opt/stt/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STT_CONFIG=/etc/stt/config.yaml \
    STT_DATA_DIR=/var/lib/stt \
    STT_KEYS_FILE=/etc/stt/keys/keys.json \
    STT_HOST=0.0.0.0 \
    STT_PORT=8000 \
    HF_HOME=/var/lib/stt/models/huggingface \
    HF_HUB_DISABLE_TELEMETRY=1
USER 10001:10001
WORKDIR /var/lib/stt
VOLUME ["/var/lib/stt"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=15m --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('STT_PORT', '8000'), timeout=4)"]
ENTRYPOINT ["python", "-m", "app"]
CMD ["serve"]
