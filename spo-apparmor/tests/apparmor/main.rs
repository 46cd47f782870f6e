//! Integration tests of the AppArmor backend (one binary: the machine has two cores).
//!
//! Tests that need apparmor_parser and its features file print `skipped: <reason>` when they
//! are missing, and fail instead when `CI` is set.

mod backend;
mod injection;
mod loader;
mod recording;
mod render;
mod support;
