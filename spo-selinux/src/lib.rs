#![doc = include_str!("../README.md")]

pub mod backend;
pub mod batch;
pub mod cil;
pub mod error;
pub mod guardrails;
pub mod ident;
pub mod install;
pub mod merge;
pub mod raw;
pub mod recording;
pub mod render;
pub mod templates;
pub mod validate;
pub mod verify;

pub use backend::{RawSelinuxBackend, SelinuxBackend};
pub use batch::{BatchReport, ModuleReport};
pub use error::SelinuxError;
pub use guardrails::Guardrails;
pub use install::{ModuleStore, SelinuxNode, Semodule};
pub use merge::merge_profiles;
pub use raw::render_raw_selinux_profile;
pub use render::{MemoryLookup, ProfileLookup, RenderContext, RenderedModule, render_selinux_profile};
pub use validate::{PolicyValidator, Secilc};
