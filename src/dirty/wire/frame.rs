//! The dirty protocol's frame header, as Gunicorn 27 puts it on the wire:
//! the magic "GD", version 1, a message kind, the payload's length (u32,
//! big-endian, at most 64 MiB) and a request id (u64, big-endian), 16 bytes
//! in all. The payload that follows is TLV (`tlv.rs`).

use std::fmt;

pub const MAGIC: [u8; 2] = *b"GD";
pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 16;
/// The largest payload either side accepts (Gunicorn's MAX_MESSAGE_SIZE).
pub const MAX_PAYLOAD: usize = 64 * 1024 * 1024;

/// What a frame carries. The first eight are Gunicorn's; `Ready` and
/// `Cancel` only ever travel between ferrocorn's dirty arbiter and its own
/// workers, and are refused anywhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Response,
    Error,
    Chunk,
    End,
    Stash,
    Status,
    Manage,
    /// A worker's thread is ready for calls.
    Ready,
    /// The caller of this call has gone: stop producing its results.
    Cancel,
}

impl Kind {
    pub fn code(self) -> u8 {
        match self {
            Kind::Request => 0x01,
            Kind::Response => 0x02,
            Kind::Error => 0x03,
            Kind::Chunk => 0x04,
            Kind::End => 0x05,
            Kind::Stash => 0x10,
            Kind::Status => 0x11,
            Kind::Manage => 0x12,
            Kind::Ready => 0x70,
            Kind::Cancel => 0x71,
        }
    }

    fn from_code(code: u8, internal: bool) -> Option<Kind> {
        Some(match code {
            0x01 => Kind::Request,
            0x02 => Kind::Response,
            0x03 => Kind::Error,
            0x04 => Kind::Chunk,
            0x05 => Kind::End,
            0x10 => Kind::Stash,
            0x11 => Kind::Status,
            0x12 => Kind::Manage,
            0x70 if internal => Kind::Ready,
            0x71 if internal => Kind::Cancel,
            _ => return None,
        })
    }

    /// The frame ends a call: its answer, or the last of a stream.
    pub fn ends_call(self) -> bool {
        matches!(self, Kind::Response | Kind::Error | Kind::End)
    }

    /// Gunicorn's name for it (the `type` of its message dicts).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Request => "request",
            Kind::Response => "response",
            Kind::Error => "error",
            Kind::Chunk => "chunk",
            Kind::End => "end",
            Kind::Stash => "stash",
            Kind::Status => "status",
            Kind::Manage => "manage",
            Kind::Ready => "ready",
            Kind::Cancel => "cancel",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    pub id: u64,
    pub len: usize,
}

/// Why 16 bytes are not a header; the texts are Gunicorn's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    Magic([u8; 2]),
    Version(u8),
    Kind(u8),
    TooLarge(u64),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Magic(m) => {
                write!(f, "Invalid magic: {}, expected b'GD'", crate::util::pyrepr::bytes_repr(m))
            }
            FrameError::Version(v) => write!(f, "Unsupported protocol version: {v}, expected {VERSION}"),
            FrameError::Kind(k) => write!(f, "Unknown message type: 0x{k:02x}"),
            FrameError::TooLarge(n) => write!(f, "Message too large: {n} bytes (max: {MAX_PAYLOAD})"),
        }
    }
}

impl std::error::Error for FrameError {}

impl Header {
    pub fn new(kind: Kind, id: u64, len: usize) -> Header {
        Header { kind, id, len }
    }

    /// Reads a header. `internal` admits ferrocorn's own kinds (on the
    /// lanes between the dirty arbiter and its workers, never on the
    /// public socket).
    pub fn parse(b: &[u8; HEADER_LEN], internal: bool) -> Result<Header, FrameError> {
        let magic = [b[0], b[1]];
        if magic != MAGIC {
            return Err(FrameError::Magic(magic));
        }
        if b[2] != VERSION {
            return Err(FrameError::Version(b[2]));
        }
        let kind = Kind::from_code(b[3], internal).ok_or(FrameError::Kind(b[3]))?;
        let len = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
        if len as usize > MAX_PAYLOAD {
            return Err(FrameError::TooLarge(u64::from(len)));
        }
        let id = u64::from_be_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]);
        Ok(Header { kind, id, len: len as usize })
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..2].copy_from_slice(&MAGIC);
        b[2] = VERSION;
        b[3] = self.kind.code();
        // Callers never build a payload past MAX_PAYLOAD (checked where the
        // payload is made), so the length fits.
        b[4..8].copy_from_slice(&u32::try_from(self.len).unwrap_or(u32::MAX).to_be_bytes());
        b[8..].copy_from_slice(&self.id.to_be_bytes());
        b
    }
}

/// Rewrites the request id of an encoded header in place (the arbiter
/// numbers the calls it hands a worker, and gives the caller its own id
/// back).
pub fn set_id(header: &mut [u8; HEADER_LEN], id: u64) {
    header[8..].copy_from_slice(&id.to_be_bytes());
}

/// A whole frame: header, then payload.
pub fn frame(kind: Kind, id: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&Header::new(kind, id, payload.len()).encode());
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let h = Header::new(Kind::Chunk, 0x0102_0304_0506_0708, 513);
        let b = h.encode();
        assert_eq!(&b[..4], b"GD\x01\x04");
        assert_eq!(&b[4..8], &[0, 0, 2, 1]);
        assert_eq!(Header::parse(&b, false), Ok(h));

        let mut bad = b;
        bad[0] = b'X';
        assert_eq!(
            Header::parse(&bad, false).map_err(|e| e.to_string()),
            Err("Invalid magic: b'XD', expected b'GD'".into())
        );
        let mut bad = b;
        bad[2] = 2;
        assert_eq!(Header::parse(&bad, false), Err(FrameError::Version(2)));
        let mut bad = b;
        bad[3] = 0x13;
        assert_eq!(Header::parse(&bad, false).map_err(|e| e.to_string()), Err("Unknown message type: 0x13".into()));
        let mut bad = b;
        bad[4..8].copy_from_slice(&(MAX_PAYLOAD as u32 + 1).to_be_bytes());
        assert_eq!(Header::parse(&bad, false), Err(FrameError::TooLarge(MAX_PAYLOAD as u64 + 1)));
        let mut max = b;
        max[4..8].copy_from_slice(&(MAX_PAYLOAD as u32).to_be_bytes());
        assert_eq!(Header::parse(&max, false).map(|h| h.len), Ok(MAX_PAYLOAD));
    }

    #[test]
    fn internal_kinds_only_where_admitted() {
        let ready = Header::new(Kind::Ready, 0, 0).encode();
        assert_eq!(Header::parse(&ready, false), Err(FrameError::Kind(0x70)));
        assert_eq!(Header::parse(&ready, true).map(|h| h.kind), Ok(Kind::Ready));
    }

    #[test]
    fn ids_are_rewritten_in_place() {
        let mut b = Header::new(Kind::Request, 7, 3).encode();
        set_id(&mut b, u64::MAX);
        assert_eq!(Header::parse(&b, false).map(|h| h.id), Ok(u64::MAX));
        assert_eq!(frame(Kind::End, 9, b"").len(), HEADER_LEN);
    }
}
