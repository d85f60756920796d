//! Crate tests: synthetic GGUF files from a tiny writer, safetensors files, fuzzing, and the real
//! SmolLM2 GGUF when it is available.

mod blocks;
mod dequant_tests;
mod fuzz;
mod gguf_tests;
mod gguf_writer;
mod real_file;
mod safetensors_tests;
