# gpunn on an NVIDIA GPU.
#   docker build -t gpunn .
#   docker run --rm --gpus all gpunn train
#   docker run --rm --gpus all -v "$PWD:/data" gpunn train --data /data/my.csv --target y
FROM nvidia/cuda:12.6.3-runtime-ubuntu24.04

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# The CUDA base image pins the CUDA libraries; Ubuntu's python3 is taken as released.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv \
    && useradd --create-home --uid 10001 gpunn

WORKDIR /src
COPY pyproject.toml README.md ./
COPY gpunn ./gpunn
# The project itself, with CuPy for CUDA 12 and the data (CSV/Parquet), plotting,
# scikit-learn and ONNX extras.
# hadolint ignore=DL3013
RUN pip install ".[cuda12,data,plot,sklearn,onnx]"

USER 10001
WORKDIR /home/gpunn
ENTRYPOINT ["gpunn"]
CMD ["train"]
