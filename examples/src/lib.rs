//! Example programs that use the spo crates the way another tool would; see `examples/`.
//! The manifests under `manifests/` are the project's reference fixtures.
