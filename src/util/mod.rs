//! Small OS helpers shared by the master and the workers.

pub mod base64;
pub mod daemon;
pub mod owner;
mod printable;
pub mod proctitle;
pub mod pyrepr;
pub mod users;
