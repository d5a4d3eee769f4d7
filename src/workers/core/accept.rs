//! An event-driven worker's epoll: what its tokens stand for, and its
//! listening sockets, watched while the worker has room for connections.

use super::slab::{ConnToken, Key, SlotKey};
use crate::net::epoll::{Epoll, READABLE};
use crate::net::listener::Listener;
use crate::net::stream::{Peer, Stream};
use crate::net::tls::TlsAcceptor;
use crate::scoreboard::SlotHandle;
use crate::settings::Settings;
use std::io;
use std::time::{Duration, Instant};

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
    exhaustion: Exhaustion,
    tls: Option<TlsAcceptor>,
    /// The worker's scoreboard slot, when it shares new connections out
    /// with its siblings (see [`Acceptor::wants`]).
    share: Option<SlotHandle>,
    /// When the worker next looks at whether it holds too many.
    next_shed: Option<Instant>,
}

/// What [`Acceptor::accept`] found.
pub enum Accepted {
    Conn(Stream, Peer),
    /// Nobody is waiting.
    None,
    /// The process is out of descriptors (or memory for sockets): accepting
    /// pauses for a moment.
    Exhausted,
}

impl Acceptor {
    pub fn new(listeners: Vec<Listener>, tls: Option<TlsAcceptor>) -> Acceptor {
        Acceptor { listeners, watching: false, exhaustion: Exhaustion::default(), tls, share: None, next_shed: None }
    }

    /// The worker holds keep-alive connections: it takes new ones only
    /// while it holds no more than its share (see [`Acceptor::wants`]).
    /// Not with `--reuse-port`, where each worker listens on a socket of
    /// its own: the kernel spreads connections over them, and one that
    /// waits on a worker's own socket can only be taken by that worker.
    pub fn sharing(mut self, slot: SlotHandle, settings: &Settings) -> Acceptor {
        slot.publish_accepting(None);
        if !settings.reuse_port {
            self.share = Some(slot);
        }
        self
    }

    /// Whether the worker, holding `held` connections, should watch the
    /// listeners now (see [`Acceptor::follow`]): it is `able` to take more
    /// (room, not paused) and, if it shares, holds no more than its share.
    ///
    /// Why share: a keep-alive connection stays with the worker that
    /// accepted it, and whichever worker is quickest back in its wait takes
    /// the next client (with EPOLLEXCLUSIVE, always the first in the
    /// listener's queue). A burst of clients (a load balancer opening its
    /// pool) then lands on one worker and the others idle: with two
    /// workers and 64 clients, 63 to 1 was common, at half the throughput.
    /// A worker past its share stops watching the listeners and leaves
    /// what is queued to its siblings (woken for it too, see
    /// [`Acceptor::watch`]); it watches again once within its share.
    fn wants(&self, held: usize, able: bool) -> bool {
        let Some(slot) = &self.share else { return able };
        slot.publish_accepting(able.then_some(held));
        able && within_share(held as u64, slot.least_accepting(SHARE_FRESH_MS))
    }

    /// Watches the listeners while the worker, holding `held`, has room,
    /// is not paused after running out of descriptors, and (if it shares)
    /// is within its share; stops watching otherwise.
    pub fn follow(&mut self, epoll: &Epoll, held: usize, has_room: bool, now: Instant) -> io::Result<()> {
        let able = has_room && self.may_accept(now);
        let on = self.wants(held, able);
        self.watch(epoll, on)
    }

    /// How many connections the worker, holding `held`, may accept now
    /// before it is past its share (no limit when it does not share or has
    /// no sibling taking connections).
    pub fn share_left(&self, held: usize) -> usize {
        let Some(slot) = &self.share else { return usize::MAX };
        let Some(least) = slot.least_accepting(SHARE_FRESH_MS) else { return usize::MAX };
        // Within its share it may take one more; past it, none.
        let most = most_held(least).saturating_add(1);
        usize::try_from(most.saturating_sub(held as u64)).unwrap_or(usize::MAX)
    }

    /// How many of its keep-alive connections the worker, holding `held`,
    /// should close after their next response, so that their clients
    /// connect again and land on a sibling: None between looks (one a
    /// second, so the closes of the last look are counted first).
    /// Sharing steers new connections only; this moves established ones
    /// when a worker holds far more than a sibling (it was alone when a
    /// pool of clients connected, or the sibling has just been started).
    pub fn shed(&mut self, held: usize, now: Instant) -> Option<usize> {
        let slot = self.share.as_ref()?;
        if self.next_shed.is_some_and(|t| now < t) {
            return None;
        }
        self.next_shed = Some(now + SHED_EVERY);
        let least = slot.least_accepting(SHARE_FRESH_MS);
        Some(usize::try_from(excess(held as u64, least)).unwrap_or(usize::MAX))
    }

    /// The worker takes no more connections (it is stopping).
    pub fn retire(&mut self, epoll: &Epoll) -> io::Result<()> {
        if let Some(slot) = &self.share {
            slot.publish_accepting(None);
        }
        self.watch(epoll, false)
    }

    pub fn listeners(&self) -> &[Listener] {
        &self.listeners
    }

    pub fn is_watching(&self) -> bool {
        self.watching
    }

    /// Whether accepting is allowed now (not paused after running out of
    /// descriptors).
    fn may_accept(&self, now: Instant) -> bool {
        self.exhaustion.may_accept(now)
    }

    /// Unless the worker shares connections out, EPOLLEXCLUSIVE: a new
    /// connection wakes one worker, not all of them. A sharing worker is
    /// woken with its siblings (as Gunicorn's are): one that stops at its
    /// share may leave connections queued, and only a sibling that was
    /// woken for them too will know they are there.
    pub fn watch(&mut self, epoll: &Epoll, on: bool) -> io::Result<()> {
        if on == self.watching {
            return Ok(());
        }
        let exclusive = if self.share.is_some() { 0 } else { libc::EPOLLEXCLUSIVE as u32 };
        for (i, l) in self.listeners.iter().enumerate() {
            if on {
                epoll.add(l.fd(), READABLE | exclusive, Token::Listener(i).to_epoll())?;
            } else {
                epoll.delete(l.fd())?;
            }
        }
        self.watching = on;
        Ok(())
    }

    /// A connection waiting on listener `index`, if any. Running out of
    /// descriptors stops watching the listeners for a moment instead of
    /// spinning on a listener that stays readable.
    pub fn accept(&mut self, epoll: &Epoll, index: usize) -> Accepted {
        let Some(listener) = self.listeners.get(index) else { return Accepted::None };
        match listener.accept() {
            Ok(Some((stream, peer))) => match &self.tls {
                None => Accepted::Conn(stream, peer),
                Some(tls) => match tls.wrap(stream) {
                    Ok(stream) => Accepted::Conn(stream, peer),
                    Err(e) => {
                        crate::log::debug!("TLS session refused: {e}");
                        Accepted::None
                    }
                },
            },
            Ok(None) => Accepted::None,
            Err(e) => {
                if self.exhaustion.note(&e, Instant::now()) {
                    let _ = self.watch(epoll, false);
                    Accepted::Exhausted
                } else {
                    crate::log::error!("accept failed: {e}");
                    Accepted::None
                }
            }
        }
    }
}

/// A sibling whose last beat is older than this is not compared with: its
/// loop is stuck or it is gone, and new connections should not wait for
/// it. Sharing workers beat at least every [`SHARE_BEAT`].
pub const SHARE_FRESH_MS: u64 = 1000;
pub const SHARE_BEAT: Duration = Duration::from_millis(250);

/// A worker holding `held` connections is within its share while it holds
/// no more than the least-loaded accepting sibling plus a margin (two, and
/// an eighth more), which keeps the listeners from being dropped and
/// re-added for every connection. The least-loaded worker is always within
/// its share, so some worker always takes new connections.
fn within_share(held: u64, least_sibling: Option<u64>) -> bool {
    least_sibling.is_none_or(|least| held <= most_held(least))
}

/// The most a worker holds within its share, beside a least-loaded sibling
/// holding `least`.
fn most_held(least: u64) -> u64 {
    least.saturating_add(share_margin(least))
}

fn share_margin(least: u64) -> u64 {
    2 + least / 8
}

const SHED_EVERY: Duration = Duration::from_secs(1);

/// Past twice the margin over the least-loaded sibling, half the
/// difference beyond it is handed back: the two end up near the middle.
fn excess(held: u64, least_sibling: Option<u64>) -> u64 {
    least_sibling.map_or(0, |least| held.saturating_sub(least.saturating_add(2 * share_margin(least))) / 2)
}

/// Out of descriptors: accept(2) keeps failing while the listener stays
/// readable. Accepting pauses for [`Exhaustion::PAUSE`], and the error is
/// logged once per [`Exhaustion::LOG_EVERY`] with how often it happened,
/// not once per attempt.
#[derive(Debug, Default)]
pub struct Exhaustion {
    paused_until: Option<Instant>,
    since_logged: u64,
    last_logged: Option<Instant>,
}

impl Exhaustion {
    pub const PAUSE: Duration = Duration::from_millis(100);
    const LOG_EVERY: Duration = Duration::from_secs(5);

    /// Whether `e` is running out of descriptors or socket memory; if so,
    /// accepting pauses (and the log line is due or counted).
    pub fn note(&mut self, e: &io::Error, now: Instant) -> bool {
        if !matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)) {
            return false;
        }
        self.paused_until = Some(now + Self::PAUSE);
        self.since_logged += 1;
        if self.last_logged.is_none_or(|t| now.duration_since(t) >= Self::LOG_EVERY) {
            crate::log::error!(
                "accept failed: {e} ({} time(s) since the last report); not accepting for {} ms",
                self.since_logged,
                Self::PAUSE.as_millis()
            );
            self.last_logged = Some(now);
            self.since_logged = 0;
        }
        true
    }

    pub fn may_accept(&self, now: Instant) -> bool {
        self.paused_until.is_none_or(|t| now >= t)
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

    #[test]
    fn a_worker_past_its_share_leaves_new_connections_to_its_siblings() {
        assert!(within_share(100, None), "alone, every connection is its share");
        assert!(within_share(0, Some(0)));
        assert!(within_share(2, Some(0)));
        assert!(!within_share(3, Some(0)));
        assert!(within_share(36, Some(32)));
        assert!(!within_share(39, Some(32)));
        // The least-loaded worker is always within its share.
        for least in [0, 1, 7, 1000] {
            assert!(within_share(least, Some(least)));
        }
    }

    #[test]
    fn a_worker_far_past_its_share_hands_back_half_the_difference() {
        assert_eq!(excess(64, None), 0, "alone, nothing to hand back");
        assert_eq!(excess(64, Some(0)), 30);
        assert_eq!(excess(4, Some(0)), 0, "within twice the margin");
        assert_eq!(excess(40, Some(24)), 3);
        assert_eq!(excess(24, Some(40)), 0);
        // After handing back, the two are within each other's share.
        let (held, least) = (64, 0);
        let moved = excess(held, Some(least));
        assert!(within_share(held - moved, Some(least + moved)) && within_share(least + moved, Some(held - moved)));
    }

    #[test]
    fn running_out_of_descriptors_pauses_and_is_counted_not_logged_each_time() {
        let mut ex = Exhaustion::default();
        let t0 = Instant::now();
        assert!(!ex.note(&io::Error::from_raw_os_error(libc::ECONNRESET), t0));
        assert!(ex.may_accept(t0));
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        assert!(ex.note(&emfile, t0));
        assert!(!ex.may_accept(t0) && ex.may_accept(t0 + Exhaustion::PAUSE));
        for i in 1..1000 {
            ex.note(&emfile, t0 + Duration::from_micros(i));
        }
        assert_eq!(ex.since_logged, 999, "counted, not logged");
        ex.note(&emfile, t0 + Duration::from_secs(6));
        assert_eq!(ex.since_logged, 0, "one line with the count");
    }
}
