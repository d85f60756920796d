//! vqllm-codegen
