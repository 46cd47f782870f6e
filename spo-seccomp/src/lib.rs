#![doc = include_str!("../README.md")]

pub mod apply;
pub mod backend;
pub mod compile;
pub mod error;
pub mod merge;
pub mod node;
pub mod oci;
pub mod resolve;
pub mod syscalls;
pub mod validate;

pub use error::SeccompError;
