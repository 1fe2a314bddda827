//! The Redis engine's pure parts (placeholder; the lead merges the full module doc).

pub mod merge;
