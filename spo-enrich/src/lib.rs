#![doc = include_str!("../README.md")]

pub mod attribution;
pub mod audit;
pub mod command;
pub mod enriched;
pub mod pipeline;
pub mod rotate;
pub mod source;
pub mod tail;
