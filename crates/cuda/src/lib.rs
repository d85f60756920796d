//! vqllm-cuda
