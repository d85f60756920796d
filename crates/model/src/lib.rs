//! vqllm-model
