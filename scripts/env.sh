# Sourced by the other scripts: CUDA pieces that vqllm needs on a machine without a CUDA toolkit.
# NVRTC (libnvrtc) and CUDA's headers come from the pip wheels nvidia-cuda-nvrtc / nvidia-cuda-runtime,
# installed once into .cache/vqllm/pip. On a machine with CUDA installed (/usr/local/cuda) nothing is fetched.
VQLLM_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VQLLM_CACHE=${VQLLM_CACHE:-$VQLLM_ROOT/.cache/vqllm}
export VQLLM_CACHE_DIR=${VQLLM_CACHE_DIR:-$VQLLM_CACHE/kernels}
mkdir -p "$VQLLM_CACHE"

vqllm_setup_nvrtc() {
  if [ -f /usr/local/cuda/include/cuda_fp16.h ] && ls /usr/local/cuda/lib64/libnvrtc.so* >/dev/null 2>&1; then
    export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
    export LD_LIBRARY_PATH=$CUDA_HOME/lib64:${LD_LIBRARY_PATH:-}
    return 0
  fi
  local pip_dir=$VQLLM_CACHE/pip
  if [ ! -f "$pip_dir/nvidia/cu13/include/cuda_fp16.h" ]; then
    echo "vqllm: installing NVRTC and CUDA headers from PyPI into $pip_dir" >&2
    python3 -m pip install -q --disable-pip-version-check --no-deps --target "$pip_dir" \
      "nvidia-cuda-nvrtc==13.0.88" "nvidia-cuda-runtime==13.0.96" >&2 \
      || python3 -m pip install -q --disable-pip-version-check --no-deps --target "$pip_dir" \
      "nvidia-cuda-nvrtc>=13,<14" "nvidia-cuda-runtime>=13,<14" >&2
  fi
  export VQLLM_CUDA_INCLUDE=$pip_dir/nvidia/cu13/include
  export VQLLM_CUDA_LIB_DIR=$pip_dir/nvidia/cu13/lib
  export LD_LIBRARY_PATH=$pip_dir/nvidia/cu13/lib:${LD_LIBRARY_PATH:-}
}
