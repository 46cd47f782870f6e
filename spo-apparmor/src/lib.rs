#![doc = include_str!("../README.md")]

pub mod backend;
pub mod error;
pub mod glob;
pub mod grammar;
pub mod loader;
pub mod merge;
pub mod reader;
pub mod recording;
pub mod render;
pub mod validate;

pub use backend::{AppArmorBackend, render_and_check};
pub use error::AppArmorError;
pub use loader::{FakeLoader, KernelLoader, ProfileLoader};
pub use merge::merge_profiles;
pub use recording::profile_from_recording;
pub use render::{RenderedProfile, check_profile, render_profile};
pub use validate::DEFAULT_TIMEOUT;
pub use validate::{ParserValidator, ProfileValidator};
