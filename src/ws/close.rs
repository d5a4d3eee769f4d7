//! The closing handshake (RFC 6455 section 7), server side: who has sent a
//! close frame, whether one must still go out, and the code the application
//! is told in `websocket.disconnect`.

/// Where a WebSocket is in its closing handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseHandshake {
    /// Messages flow both ways.
    Open,
    /// Our close frame is out; the peer's is awaited, and messages it sends
    /// meanwhile are dropped.
    Sent,
    /// Over, with the code the application sees: the peer's (1005 when its
    /// frame had none), the one a protocol error was failed with, or 1006
    /// for a connection that just ended.
    Closed { code: u16 },
}

/// What `websocket.disconnect` says when no close frame told.
pub const ABNORMAL: u16 = 1006;
/// A close frame without a status code (never sent on the wire).
pub const NO_STATUS: u16 = 1005;
/// What a close frame with no code is answered with.
pub const NORMAL: u16 = 1000;

impl CloseHandshake {
    /// The server closes (the application, or the worker stopping): true
    /// when our close frame is to be written now.
    pub fn close(&mut self) -> bool {
        if *self == CloseHandshake::Open {
            *self = CloseHandshake::Sent;
            true
        } else {
            false
        }
    }

    /// The peer's close frame came with `code`: the code to answer with
    /// when ours is not out yet (a close without a code is answered 1000).
    pub fn peer_closed(&mut self, code: Option<u16>) -> Option<u16> {
        let answer = (*self == CloseHandshake::Open).then(|| code.unwrap_or(NORMAL));
        *self = CloseHandshake::Closed { code: code.unwrap_or(NO_STATUS) };
        answer
    }

    /// The peer broke the protocol: true when our close frame (with `code`)
    /// must still go out.
    pub fn fail(&mut self, code: u16) -> bool {
        let send = *self == CloseHandshake::Open;
        *self = CloseHandshake::Closed { code };
        send
    }

    /// The connection ended without (the rest of) a closing handshake.
    pub fn lost(&mut self) {
        if !self.is_closed() {
            *self = CloseHandshake::Closed { code: ABNORMAL };
        }
    }

    /// Messages may still be sent.
    pub fn is_open(&self) -> bool {
        *self == CloseHandshake::Open
    }

    /// Frames from the peer are still to be read (messages while open, its
    /// close frame once ours is out).
    pub fn reads(&self) -> bool {
        !self.is_closed()
    }

    pub fn is_closed(&self) -> bool {
        matches!(self, CloseHandshake::Closed { .. })
    }

    /// What `websocket.disconnect` reports.
    pub fn disconnect_code(&self) -> u16 {
        match self {
            CloseHandshake::Closed { code } => *code,
            _ => ABNORMAL,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_closes_first() {
        let mut h = CloseHandshake::Open;
        assert!(h.close());
        assert!(!h.close(), "one close frame only");
        assert!(!h.is_open() && h.reads());
        assert_eq!(h.peer_closed(Some(4000)), None, "the peer's frame answers ours");
        assert_eq!(h.disconnect_code(), 4000);
        assert!(!h.reads());
    }

    #[test]
    fn the_peer_closes_first_and_is_answered() {
        let mut h = CloseHandshake::Open;
        assert_eq!(h.peer_closed(None), Some(NORMAL));
        assert_eq!(h.disconnect_code(), NO_STATUS);
        assert!(!h.close());
        let mut h = CloseHandshake::Open;
        assert_eq!(h.peer_closed(Some(1001)), Some(1001));
    }

    #[test]
    fn failures_and_lost_connections() {
        let mut h = CloseHandshake::Open;
        assert!(h.fail(1002));
        assert_eq!(h.disconnect_code(), 1002);
        let mut h = CloseHandshake::Sent;
        assert!(!h.fail(1009));
        let mut h = CloseHandshake::Sent;
        h.lost();
        assert_eq!(h.disconnect_code(), ABNORMAL);
        let mut h = CloseHandshake::Closed { code: 1000 };
        h.lost();
        assert_eq!(h.disconnect_code(), 1000);
    }
}
