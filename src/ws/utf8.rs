//! Incremental UTF-8 validation for text messages that arrive in pieces
//! (fragments, or one frame spread over several reads). Each piece is checked
//! as it arrives, so an invalid prefix fails the connection without waiting
//! for the rest, and every byte is validated exactly once; a character cut
//! between two pieces is held back (at most 3 bytes) until it completes.

use std::str;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Invalid;

#[derive(Debug, Default)]
pub(crate) struct Utf8Stream {
    /// Start of a character still missing bytes; always a valid prefix.
    carry: [u8; 4],
    carry_len: usize,
}

/// Length of the sequence a byte starts, for bytes that can start one of
/// more than one byte; others count as 1 so the validator reports them.
fn sequence_len(lead: u8) -> usize {
    match lead {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 1,
    }
}

/// Where the last character of `bytes` starts if it is cut short, else `len`.
fn incomplete_tail_start(bytes: &[u8]) -> usize {
    let n = bytes.len();
    for back in 1..=n.min(3) {
        let i = n - back;
        let b = bytes.get(i).copied().unwrap_or(0);
        if b & 0xC0 != 0x80 {
            return if sequence_len(b) > back { i } else { n };
        }
    }
    n
}

impl Utf8Stream {
    /// Validates `piece` as the continuation of the text so far and appends
    /// every completed character to `out`.
    pub(crate) fn push(&mut self, mut piece: &[u8], out: &mut String) -> Result<(), Invalid> {
        if self.carry_len > 0 {
            let need = sequence_len(self.carry[0]).saturating_sub(self.carry_len);
            let take = need.min(piece.len());
            let (head, rest) = piece.split_at(take);
            let end = self.carry_len + take;
            let slot = self.carry.get_mut(self.carry_len..end).ok_or(Invalid)?;
            slot.copy_from_slice(head);
            self.carry_len = end;
            piece = rest;
            match str::from_utf8(&self.carry[..end]) {
                Ok(s) => {
                    out.push_str(s);
                    self.carry_len = 0;
                }
                // Still short, and `piece` is used up.
                Err(e) if e.error_len().is_none() => return Ok(()),
                Err(_) => return Err(Invalid),
            }
        }
        let (whole, tail) = piece.split_at(incomplete_tail_start(piece));
        out.push_str(str::from_utf8(whole).map_err(|_| Invalid)?);
        if !tail.is_empty() {
            match str::from_utf8(tail) {
                Err(e) if e.error_len().is_none() => {
                    let slot = self.carry.get_mut(..tail.len()).ok_or(Invalid)?;
                    slot.copy_from_slice(tail);
                    self.carry_len = tail.len();
                }
                // A cut-short tail can only be a valid prefix or invalid.
                _ => return Err(Invalid),
            }
        }
        Ok(())
    }

    /// Ends the message: a character still cut short is invalid.
    pub(crate) fn finish(&mut self) -> Result<(), Invalid> {
        let complete = self.carry_len == 0;
        self.carry_len = 0;
        if complete {
            Ok(())
        } else {
            Err(Invalid)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pieces: &[&[u8]]) -> Result<String, Invalid> {
        let mut v = Utf8Stream::default();
        let mut out = String::new();
        for p in pieces {
            v.push(p, &mut out)?;
        }
        v.finish()?;
        Ok(out)
    }

    #[test]
    fn every_split_of_valid_text() {
        let text = "a€𝄞é\u{7ff}\u{800}\u{ffff}\u{10000}\u{10ffff}z";
        let b = text.as_bytes();
        for i in 0..=b.len() {
            for j in i..=b.len() {
                assert_eq!(run(&[&b[..i], &b[i..j], &b[j..]]).as_deref(), Ok(text), "{i} {j}");
            }
        }
        // One byte at a time.
        let pieces: Vec<&[u8]> = b.chunks(1).collect();
        assert_eq!(run(&pieces).as_deref(), Ok(text));
    }

    #[test]
    fn invalid_sequences_fail_however_split() {
        let cases: [&[u8]; 12] = [
            b"\xff",
            b"\xc0\x80",
            b"a\xe0\x80\x80",    // overlong 3-byte
            b"\xed\xa0\x80",     // surrogate
            b"\xf4\x90\x80\x80", // above U+10FFFF
            b"\xf5\x80\x80\x80",
            b"\x80",
            b"\xe2\x82", // truncated at the end
            b"\xe2\x82a",
            b"\xf0\x9d\x84",
            b"\xe2\x82\xac\x80", // stray continuation
            b"ok\xce",
        ];
        for bad in cases {
            assert!(std::str::from_utf8(bad).is_err());
            for i in 0..=bad.len() {
                for j in i..=bad.len() {
                    assert_eq!(run(&[&bad[..i], &bad[i..j], &bad[j..]]), Err(Invalid), "{bad:?} {i} {j}");
                }
            }
        }
    }

    #[test]
    fn invalid_prefix_fails_before_the_end() {
        let mut v = Utf8Stream::default();
        let mut out = String::new();
        assert_eq!(v.push(b"abc\xe0\x80", &mut out), Err(Invalid));
        let mut v = Utf8Stream::default();
        assert_eq!(v.push(b"\xe0", &mut out), Ok(()));
        assert_eq!(v.push(b"\x80", &mut out), Err(Invalid));
    }

    #[test]
    fn matches_std_on_pseudo_random_bytes() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 9) as usize;
            // Bias towards bytes that form multi-byte sequences.
            let bytes: Vec<u8> = (0..len)
                .map(|k| {
                    let r = (x >> (k * 7)) as u8;
                    match r % 4 {
                        0 => b'a',
                        1 => 0x80 | (r >> 2 & 0x3f),
                        2 => 0xC0 | (r >> 2 & 0x3f),
                        _ => r,
                    }
                })
                .collect();
            let cut = (x >> 60) as usize % (len + 1);
            let expected = std::str::from_utf8(&bytes).map(str::to_owned).map_err(|_| Invalid);
            assert_eq!(run(&[&bytes[..cut], &bytes[cut..]]), expected, "{bytes:?} {cut}");
        }
    }
}
