//! Cleartext HTTP/2 with prior knowledge (RFC 9113 3.4): which peers may
//! open with the connection preface, and what the first bytes say.

/// What a client with prior knowledge sends first.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniff {
    /// The whole preface is there.
    Match,
    /// What is there is the start of the preface: wait for more.
    Partial,
    /// Not the preface.
    Mismatch,
}

pub fn sniff(buf: &[u8]) -> Sniff {
    if buf.len() >= PREFACE.len() {
        if buf.starts_with(PREFACE) {
            Sniff::Match
        } else {
            Sniff::Mismatch
        }
    } else if PREFACE.starts_with(buf) {
        Sniff::Partial
    } else {
        Sniff::Mismatch
    }
}

/// How a connection may become HTTP/2, decided per connection by the
/// worker from the settings, the listener and the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum H2Offer {
    /// HTTP/1 only.
    #[default]
    None,
    /// TLS: HTTP/2 when ALPN chose `h2`.
    Alpn,
    /// Cleartext from a trusted peer: HTTP/2 when the connection opens with
    /// the preface. `strict`: anything else is refused with 400
    /// (`http2_cleartext = prior-knowledge`).
    PriorKnowledge { strict: bool },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffing() {
        assert_eq!(sniff(b""), Sniff::Partial);
        assert_eq!(sniff(b"PRI * HT"), Sniff::Partial);
        assert_eq!(sniff(b"GET / HTTP/1.1\r\n"), Sniff::Mismatch);
        assert_eq!(sniff(PREFACE), Sniff::Match);
        let mut more = PREFACE.to_vec();
        more.extend_from_slice(b"\0\0\0\x04");
        assert_eq!(sniff(&more), Sniff::Match);
        assert_eq!(sniff(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"), Sniff::Mismatch);
    }
}
