#![doc = include_str!("../README.md")]

pub mod cache;
pub mod daemon;
pub mod enricher;
pub mod error;
pub mod kubeapi;
pub mod leader;
pub mod manager;
pub mod metrics;
pub mod nodestatus;
pub mod recorder;
pub mod server;
pub mod tasks;
pub mod webhook;
pub mod workloads;
pub mod workqueue;

pub use error::OperatorError;
