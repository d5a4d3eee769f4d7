//! The worker core: what every worker type does the same way, whatever
//! its engine and wherever Python runs.

pub mod access;
pub mod signals;
