//! Implementations of the ports that `datamesh-mount` and `datamesh-agent` define, over
//! this crate's engine (dependency inversion: those crates never depend on the engine).

pub mod agent;
pub mod mount;
mod tree_put;
