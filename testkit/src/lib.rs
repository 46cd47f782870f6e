//! Test scaffolding shared by the workspace's integration tests (never published): real
//! containers with runc. Each crate's tests used to carry their own copy of this.
//!
//! Tests that need root, `runc` and a static busybox call [`runc::require_runtime`], which says
//! `skipped: <reason>` when they are missing, except in CI (`CI` set), where it panics: nothing
//! may be skipped there.

pub mod runc;
