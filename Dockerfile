# gpunn on an NVIDIA GPU. Build:   docker build -t gpunn .
# Run:                             docker run --rm --gpus all gpunn train
FROM nvidia/cuda:12.6.3-runtime-ubuntu24.04

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

WORKDIR /src
COPY pyproject.toml README.md ./
COPY gpunn ./gpunn
RUN pip install ".[cuda12]"

RUN useradd --create-home gpunn
USER gpunn
WORKDIR /home/gpunn
ENTRYPOINT ["gpunn"]
CMD ["train"]
