//! The RFC 6455 §5.2 frame layout: header parsing and encoding, and payload
//! masking. Parsing is purely structural; which frames are acceptable is the
//! reader's business ([`crate::ws::codec`]).
//!
//! ```text
//!  0               1               2               3
//!  FIN RSV1-3 opcode | MASK len7 | [len16 | len64] | [masking key] | payload
//! ```

/// The opcodes RFC 6455 defines; every other value is reserved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Opcode {
    Continuation = 0x0,
    Text = 0x1,
    Binary = 0x2,
    Close = 0x8,
    Ping = 0x9,
    Pong = 0xA,
}

impl Opcode {
    pub fn from_u8(value: u8) -> Option<Opcode> {
        Some(match value {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    /// Control frames (close, ping, pong) may not be fragmented and carry at
    /// most [`MAX_CONTROL_PAYLOAD`] bytes.
    pub fn is_control(self) -> bool {
        self as u8 & 0x8 != 0
    }
}

pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Longest header on the wire: 2 + 8 (64-bit length) + 4 (masking key).
pub const MAX_HEADER_LEN: usize = 14;

/// Longest header the server sends: it never masks.
pub const MAX_SERVER_HEADER_LEN: usize = 10;

/// A frame header as read off the wire, not yet checked against the rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    /// RSV1..RSV3 as the low 3 bits.
    pub rsv: u8,
    /// Raw 4-bit opcode; see [`Opcode::from_u8`].
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub payload_len: u64,
    /// Bytes the header occupies; the payload starts here.
    pub header_len: usize,
}

impl FrameHeader {
    /// RFC 6455 §5.2: "the minimal number of bytes MUST be used to encode
    /// the length" (Gunicorn 27 fails the connection otherwise).
    pub fn length_is_minimal(&self) -> bool {
        let mask_len = if self.mask.is_some() { 4 } else { 0 };
        match self.header_len.saturating_sub(2 + mask_len) {
            2 => self.payload_len >= 126,
            8 => self.payload_len > u64::from(u16::MAX),
            _ => true,
        }
    }
}

/// The only structural error: RFC 6455 §5.2 requires the most significant
/// bit of a 64-bit length to be 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LengthOverflow;

/// Parses the header at the front of `buf`; `Ok(None)` until it is complete.
/// Non-minimal length encodings are parsed; whether to accept them is the
/// reader's choice ([`FrameHeader::length_is_minimal`]).
#[inline]
pub fn parse_header(buf: &[u8]) -> Result<Option<FrameHeader>, LengthOverflow> {
    let (b0, b1) = match buf {
        [b0, b1, ..] => (*b0, *b1),
        _ => return Ok(None),
    };
    let (payload_len, len_end) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(&[hi, lo]) => (u64::from(u16::from_be_bytes([hi, lo])), 4),
            _ => return Ok(None),
        },
        127 => match buf.get(2..10).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
            Some(bytes) => {
                let len = u64::from_be_bytes(bytes);
                if len >> 63 != 0 {
                    return Err(LengthOverflow);
                }
                (len, 10)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    let (mask, header_len) = if b1 & 0x80 != 0 {
        match buf.get(len_end..len_end + 4).and_then(|b| <[u8; 4]>::try_from(b).ok()) {
            Some(key) => (Some(key), len_end + 4),
            None => return Ok(None),
        }
    } else {
        (None, len_end)
    };
    Ok(Some(FrameHeader {
        fin: b0 & 0x80 != 0,
        rsv: (b0 >> 4) & 0x7,
        opcode: b0 & 0x0F,
        mask,
        payload_len,
        header_len,
    }))
}

/// XORs `data` with the masking key, `data` being the payload bytes from
/// `offset` on (so a payload can be unmasked in pieces as it arrives).
/// Masking and unmasking are the same operation.
#[inline]
pub fn apply_mask(data: &mut [u8], key: [u8; 4], offset: u64) {
    let key = u32::from_be_bytes(key).rotate_left(8 * (offset % 4) as u32).to_be_bytes();
    // A payload of a few bytes is common (chat, echo); skip the word setup.
    if data.len() < 8 {
        for (i, b) in data.iter_mut().enumerate() {
            *b ^= key[i & 3];
        }
        return;
    }
    let word = u64::from_ne_bytes([key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]]);
    // 32-byte blocks of four independent words let the compiler use vector XORs.
    let mut blocks = data.chunks_exact_mut(32);
    for block in &mut blocks {
        for lane in block.chunks_exact_mut(8) {
            if let Ok(bytes) = <[u8; 8]>::try_from(&*lane) {
                lane.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
            }
        }
    }
    let rest = blocks.into_remainder();
    let mut lanes = rest.chunks_exact_mut(8);
    for lane in &mut lanes {
        if let Ok(bytes) = <[u8; 8]>::try_from(&*lane) {
            lane.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
        }
    }
    // Every block above was a multiple of 4 bytes, so the key phase is back at 0.
    for (i, b) in lanes.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

/// An encoded server header, kept on the stack so a caller can write
/// header and payload with one `writev` and no copy of the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncodedHeader {
    bytes: [u8; MAX_HEADER_LEN],
    len: u8,
}

impl EncodedHeader {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl AsRef<[u8]> for EncodedHeader {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl std::ops::Deref for EncodedHeader {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

fn header_bytes(opcode: Opcode, fin: bool, payload_len: usize, mask: Option<[u8; 4]>) -> EncodedHeader {
    let mut bytes = [0u8; MAX_HEADER_LEN];
    bytes[0] = if fin { 0x80 } else { 0 } | opcode as u8;
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut len = if payload_len < 126 {
        bytes[1] = mask_bit | payload_len as u8;
        2
    } else if let Ok(short) = u16::try_from(payload_len) {
        bytes[1] = mask_bit | 126;
        bytes[2..4].copy_from_slice(&short.to_be_bytes());
        4
    } else {
        bytes[1] = mask_bit | 127;
        bytes[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
        10
    };
    if let Some(key) = mask {
        bytes[len..len + 4].copy_from_slice(&key);
        len += 4;
    }
    EncodedHeader { bytes, len: len as u8 }
}

/// The header of an unmasked (server-to-client) frame, minimal length form.
#[inline]
pub fn encode_header(opcode: Opcode, fin: bool, payload_len: usize) -> EncodedHeader {
    header_bytes(opcode, fin, payload_len, None)
}

/// Appends an unmasked (server-to-client) frame to `out`.
#[inline]
pub fn encode(opcode: Opcode, fin: bool, payload: &[u8], out: &mut Vec<u8>) {
    let header = encode_header(opcode, fin, payload.len());
    out.reserve(header.len() + payload.len());
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
}

/// Appends a masked (client-to-server) frame; servers never send these, it
/// exists to build client traffic in tests.
pub fn encode_masked(opcode: Opcode, fin: bool, payload: &[u8], key: [u8; 4], out: &mut Vec<u8>) {
    let header = header_bytes(opcode, fin, payload.len(), Some(key));
    out.reserve(header.len() + payload.len());
    out.extend_from_slice(&header);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(tail) = out.get_mut(start..) {
        apply_mask(tail, key, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    #[test]
    fn rfc_unmasked_hello() {
        let wire = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let h = parse_header(&wire).unwrap().unwrap();
        assert_eq!(h, FrameHeader { fin: true, rsv: 0, opcode: 1, mask: None, payload_len: 5, header_len: 2 });
        let mut out = Vec::new();
        encode(Opcode::Text, true, b"Hello", &mut out);
        assert_eq!(out, wire);
    }

    #[test]
    fn rfc_masked_hello() {
        let wire = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        let h = parse_header(&wire).unwrap().unwrap();
        assert_eq!(h.mask, Some(MASK));
        assert_eq!((h.payload_len, h.header_len, h.fin, h.opcode), (5, 6, true, 1));
        let mut payload = wire[6..].to_vec();
        apply_mask(&mut payload, MASK, 0);
        assert_eq!(payload, b"Hello");
        let mut out = Vec::new();
        encode_masked(Opcode::Text, true, b"Hello", MASK, &mut out);
        assert_eq!(out, wire);
    }

    #[test]
    fn rfc_fragmented_hello() {
        let first = [0x01, 0x03, 0x48, 0x65, 0x6c];
        let second = [0x80, 0x02, 0x6c, 0x6f];
        let a = parse_header(&first).unwrap().unwrap();
        assert_eq!((a.fin, a.opcode, a.payload_len), (false, 1, 3));
        let b = parse_header(&second).unwrap().unwrap();
        assert_eq!((b.fin, b.opcode, b.payload_len), (true, 0, 2));
        let mut out = Vec::new();
        encode(Opcode::Text, false, b"Hel", &mut out);
        encode(Opcode::Continuation, true, b"lo", &mut out);
        assert_eq!(out, [&first[..], &second[..]].concat());
    }

    #[test]
    fn rfc_ping_and_pong() {
        let ping = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let mut out = Vec::new();
        encode(Opcode::Ping, true, b"Hello", &mut out);
        assert_eq!(out, ping);
        let masked_pong = [0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        let h = parse_header(&masked_pong).unwrap().unwrap();
        assert_eq!(Opcode::from_u8(h.opcode), Some(Opcode::Pong));
        assert!(Opcode::Pong.is_control() && Opcode::Ping.is_control() && Opcode::Close.is_control());
        assert!(!Opcode::Text.is_control() && !Opcode::Continuation.is_control());
    }

    #[test]
    fn rfc_256_bytes_and_64k_lengths() {
        let h = encode_header(Opcode::Binary, true, 256);
        assert_eq!(h.as_bytes(), [0x82, 0x7E, 0x01, 0x00]);
        let h = encode_header(Opcode::Binary, true, 65536);
        assert_eq!(h.as_bytes(), [0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00]);
        let p = parse_header(&[0x82, 0x7E, 0x01, 0x00]).unwrap().unwrap();
        assert_eq!((p.payload_len, p.header_len), (256, 4));
        let p = parse_header(&[0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00]).unwrap().unwrap();
        assert_eq!((p.payload_len, p.header_len), (65536, 10));
    }

    #[test]
    fn length_form_boundaries() {
        for (len, header_len) in [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10), (1 << 40, 10)] {
            let h = encode_header(Opcode::Binary, false, len);
            assert_eq!(h.len(), header_len, "{len}");
            let p = parse_header(&h).unwrap().unwrap();
            assert_eq!((p.payload_len, p.header_len, p.fin, p.mask), (len as u64, header_len, false, None));
        }
    }

    #[test]
    fn non_minimal_lengths_parse_and_are_flagged() {
        let p = parse_header(&[0x82, 0x7E, 0x00, 0x05]).unwrap().unwrap();
        assert_eq!(p.payload_len, 5);
        assert!(!p.length_is_minimal());
        let p = parse_header(&[0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0, 5]).unwrap().unwrap();
        assert_eq!(p.payload_len, 5);
        assert!(!p.length_is_minimal());
        let p = parse_header(&[0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 1, 2, 3, 4]).unwrap().unwrap();
        assert!(!p.length_is_minimal());
        for len in [0, 125, 126, 65535, 65536, 1 << 40] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let h = header_bytes(Opcode::Binary, true, len, mask);
                assert!(parse_header(&h).unwrap().unwrap().length_is_minimal(), "{len} {mask:?}");
            }
        }
    }

    #[test]
    fn length_top_bit_rejected() {
        let wire = [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4];
        assert_eq!(parse_header(&wire), Err(LengthOverflow));
        let wire = [0x82, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4];
        assert_eq!(parse_header(&wire).unwrap().unwrap().payload_len, u64::MAX >> 1);
    }

    #[test]
    fn incomplete_headers_wait() {
        let full = [0x82, 0xFF, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00, 1, 2, 3, 4];
        for cut in 0..full.len() {
            assert_eq!(parse_header(&full[..cut]), Ok(None), "{cut}");
        }
        let p = parse_header(&full).unwrap().unwrap();
        assert_eq!((p.header_len, p.mask), (14, Some([1, 2, 3, 4])));
    }

    #[test]
    fn rsv_bits_reported() {
        let p = parse_header(&[0xF1, 0x00]).unwrap().unwrap();
        assert_eq!((p.rsv, p.opcode), (0x7, 1));
        let p = parse_header(&[0xC1, 0x00]).unwrap().unwrap();
        assert_eq!(p.rsv, 0x4);
    }

    #[test]
    fn word_masking_matches_bytewise_at_any_offset_and_length() {
        let data: Vec<u8> = (0..200u32).map(|i| (i * 31 + 7) as u8).collect();
        for len in 0..data.len() {
            for offset in 0..5u64 {
                let mut fast = data[..len].to_vec();
                apply_mask(&mut fast, MASK, offset);
                let slow: Vec<u8> =
                    data[..len].iter().enumerate().map(|(i, b)| b ^ MASK[(i + offset as usize) % 4]).collect();
                assert_eq!(fast, slow, "len {len} offset {offset}");
            }
        }
    }

    #[test]
    fn masking_in_pieces_matches_whole() {
        let data: Vec<u8> = (0..100u8).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, MASK, 0);
        for cut in 0..data.len() {
            let mut pieces = data.clone();
            let (a, b) = pieces.split_at_mut(cut);
            apply_mask(a, MASK, 0);
            apply_mask(b, MASK, cut as u64);
            assert_eq!(pieces, whole, "cut {cut}");
        }
    }
}
