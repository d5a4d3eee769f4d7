//! Small OS helpers shared by the master and the workers.

pub mod proctitle;
pub mod users;
