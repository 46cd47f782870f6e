#![doc = include_str!("../README.md")]

pub mod daemon;
pub mod error;
pub mod kubeapi;
pub mod manager;
pub mod nodestatus;
pub mod workloads;

pub use error::OperatorError;
