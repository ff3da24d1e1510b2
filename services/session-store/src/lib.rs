//! Placeholder while building.
pub mod backend;
