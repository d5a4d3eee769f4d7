//! Listening sockets (TCP, Unix, inherited fds) and the PROXY protocol.

pub mod bind;
pub mod epoll;
pub mod listen;
pub mod listener;
pub mod proxy_protocol;
pub mod stream;
pub mod systemd;
pub mod tls;
