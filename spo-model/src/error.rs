//! The crate's error type.

/// Errors of spo-model operations that are not validation findings.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The input is larger than [`crate::document::MAX_SOURCE_BYTES`].
    #[error("reading {source_name}: {size} bytes is more than the {limit}-byte limit for one file")]
    TooLarge {
        /// File name or `-`.
        source_name: String,
        /// Bytes seen (at least `limit + 1`).
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The input is not UTF-8.
    #[error("reading {source_name}: not valid UTF-8 at byte {offset}")]
    NotUtf8 {
        /// File name or `-`.
        source_name: String,
        /// Offset of the first invalid byte.
        offset: usize,
    },
    /// The input holds no document.
    #[error("reading {source_name}: no YAML or JSON document found (the file is empty or only comments)")]
    Empty {
        /// File name or `-`.
        source_name: String,
    },
    /// A value could not be written as YAML (it does not serialize to JSON).
    #[error("writing YAML")]
    WriteYaml {
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A CRD could not be rendered as YAML.
    #[error("rendering CRD {name} as YAML")]
    RenderCrd {
        /// The CRD's name.
        name: String,
        /// The cause.
        #[source]
        source: serde_norway::Error,
    },
}
