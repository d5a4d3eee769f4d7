//! Small OS helpers shared by the master and the workers.

mod printable;
pub mod proctitle;
pub mod pyrepr;
pub mod users;
pub mod daemon;
pub mod owner;
