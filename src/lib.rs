//! datamesh: an encrypted, erasure-coded, self-healing peer-to-peer storage mesh.
//!
//! This crate is the engine and the CLI. See `docs/ARCHITECTURE.md` for the crate graph
//! and the write and read paths; each module's docs state its model and invariants.

pub mod adapters;
pub mod catalog;
pub mod chunker;
pub mod cli;
pub mod config;
pub mod control;
pub mod crypto;
pub mod engine;
pub mod error;
pub mod ids;
pub mod mesh;
pub mod repo;
pub mod sparse;
pub mod store;
pub mod stripe;

pub use error::{Error, ErrorKind, Result};
