//! An event-driven worker's epoll: what its tokens stand for, and its
//! listening sockets, watched while the worker has room for connections.

use super::slab::{ConnToken, Key, SlotKey};
use crate::net::epoll::{Epoll, READABLE};
use crate::net::listener::Listener;
use crate::net::stream::{Peer, Stream};
use std::io;

const WAKE: u64 = u64::MAX;
const SIGNALS: u64 = u64::MAX - 1;
/// Listener i has the token `LISTENER_0 - i`.
const LISTENER_0: u64 = u64::MAX - 2;
/// Tokens above this are not connections: a connection's token is its slot
/// index (low half) and generation (high half), and no worker has anywhere
/// near 2^32 - 64 connections.
const FIRST_SPECIAL: u64 = u64::MAX - 64;

/// What an epoll event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// The worker's own wake-up (another thread has work for the engine).
    Wake,
    /// The signal wake-up pipe: Python signal handlers are due.
    Signals,
    Listener(usize),
    Conn(ConnToken),
}

impl Token {
    pub fn to_epoll(self) -> u64 {
        match self {
            Token::Wake => WAKE,
            Token::Signals => SIGNALS,
            Token::Listener(i) => LISTENER_0 - i as u64,
            Token::Conn(t) => t.slot().to_u64(),
        }
    }

    pub fn from_epoll(v: u64) -> Token {
        match v {
            WAKE => Token::Wake,
            SIGNALS => Token::Signals,
            v if v > FIRST_SPECIAL => Token::Listener((LISTENER_0 - v) as usize),
            v => Token::Conn(ConnToken::from_slot(SlotKey::from_u64(v))),
        }
    }
}

/// The listening sockets, in the worker's epoll only while it takes new
/// connections (when it is full they wait in the kernel's backlog, where
/// another worker may take them).
pub struct Acceptor {
    listeners: Vec<Listener>,
    watching: bool,
}

impl Acceptor {
    pub fn new(listeners: Vec<Listener>) -> Acceptor {
        Acceptor { listeners, watching: false }
    }

    pub fn listeners(&self) -> &[Listener] {
        &self.listeners
    }

    pub fn is_watching(&self) -> bool {
        self.watching
    }

    /// EPOLLEXCLUSIVE: a new connection wakes one worker, not all of them.
    pub fn watch(&mut self, epoll: &Epoll, on: bool) -> io::Result<()> {
        if on == self.watching {
            return Ok(());
        }
        for (i, l) in self.listeners.iter().enumerate() {
            if on {
                epoll.add(l.fd(), READABLE | libc::EPOLLEXCLUSIVE as u32, Token::Listener(i).to_epoll())?;
            } else {
                epoll.delete(l.fd())?;
            }
        }
        self.watching = on;
        Ok(())
    }

    /// A connection waiting on listener `index`, if any.
    pub fn accept(&self, index: usize) -> io::Result<Option<(Stream, Peer)>> {
        match self.listeners.get(index) {
            Some(l) => l.accept(),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workers::core::slab::Slab;

    #[test]
    fn tokens_round_trip() {
        let mut slab: Slab<ConnToken, ()> = Slab::default();
        let t = slab.insert(());
        for token in [Token::Wake, Token::Signals, Token::Listener(0), Token::Listener(7), Token::Conn(t)] {
            assert_eq!(Token::from_epoll(token.to_epoll()), token);
        }
    }
}
