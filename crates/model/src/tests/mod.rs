//! Crate tests.
