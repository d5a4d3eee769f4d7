//! What comes back on a lane, taken apart frame by frame without holding
//! a whole frame: headers are read (16 bytes) and payload bytes pass
//! through as they arrive, so a 64 MiB result crosses the arbiter in small
//! pieces and the arbiter's memory does not depend on result sizes.
//! Sans-I/O: bytes in, pieces out.

use crate::dirty::wire::frame::{FrameError, Header, HEADER_LEN};

#[derive(Debug, Default)]
pub struct Relay {
    head: [u8; HEADER_LEN],
    have: usize,
    /// Payload bytes of the current frame still to come.
    left: usize,
    /// The current frame's header, while its payload passes.
    current: Option<Header>,
}

/// One step through received bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    /// A frame begins: its header (checked), and the raw 16 bytes.
    Head(Header, [u8; HEADER_LEN]),
    /// Payload bytes of the current frame.
    Body(&'a [u8]),
    /// The current frame is complete.
    End(Header),
}

impl Relay {
    /// Takes what it can from `input`: the piece and the bytes consumed.
    /// `None` when `input` is used up without completing anything.
    pub fn step<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Option<Piece<'a>>), FrameError> {
        if let Some(h) = self.current {
            if self.left == 0 {
                self.current = None;
                return Ok((0, Some(Piece::End(h))));
            }
            let n = self.left.min(input.len());
            if n == 0 {
                return Ok((0, None));
            }
            self.left -= n;
            return Ok((n, Some(Piece::Body(&input[..n]))));
        }
        let n = (HEADER_LEN - self.have).min(input.len());
        self.head[self.have..self.have + n].copy_from_slice(&input[..n]);
        self.have += n;
        if self.have < HEADER_LEN {
            return Ok((n, None));
        }
        self.have = 0;
        let h = Header::parse(&self.head, true)?;
        self.current = Some(h);
        self.left = h.len;
        Ok((n, Some(Piece::Head(h, self.head))))
    }

    /// Between frames (nothing of one has been taken yet).
    pub fn at_boundary(&self) -> bool {
        self.current.is_none() && self.have == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dirty::wire::frame::{frame, Kind};

    /// Everything the relay yields for `input` fed in pieces of `size`.
    fn run(input: &[u8], size: usize) -> Vec<String> {
        let mut r = Relay::default();
        let mut out = Vec::new();
        for chunk in input.chunks(size) {
            let mut at = 0;
            loop {
                let (n, piece) = r.step(&chunk[at..]).expect("valid");
                at += n;
                match piece {
                    Some(Piece::Head(h, _)) => out.push(format!("head {} {}", h.kind.name(), h.len)),
                    Some(Piece::Body(b)) => match out.last_mut() {
                        Some(last) if last.starts_with("body ") => last.push_str(&String::from_utf8_lossy(b)),
                        _ => out.push(format!("body {}", String::from_utf8_lossy(b))),
                    },
                    Some(Piece::End(h)) => out.push(format!("end {}", h.kind.name())),
                    None if at == chunk.len() => break,
                    None => {}
                }
            }
        }
        // A frame whose last bytes came with the final chunk ends on the
        // next step.
        if let Ok((_, Some(Piece::End(h)))) = r.step(&[]) {
            out.push(format!("end {}", h.kind.name()));
        }
        out
    }

    #[test]
    fn frames_in_any_chunking() {
        let mut input = frame(Kind::Chunk, 1, b"hello");
        input.extend(frame(Kind::End, 1, b""));
        input.extend(frame(Kind::Response, 2, b"abc"));
        let want = vec![
            "head chunk 5",
            "body hello",
            "end chunk",
            "head end 0",
            "end end",
            "head response 3",
            "body abc",
            "end response",
        ];
        for size in 1..=input.len() {
            assert_eq!(run(&input, size), want, "chunks of {size}");
        }
    }

    #[test]
    fn a_bad_header_is_an_error_and_boundaries_are_known() {
        let mut r = Relay::default();
        assert!(r.at_boundary());
        assert!(r.step(b"XD\x01\x02\0\0\0\0\0\0\0\0\0\0\0\0").is_err());
        let f = frame(Kind::Chunk, 1, b"xy");
        let (n, _) = r.step(&f[..17]).expect("head");
        assert_eq!(n, 16);
        assert!(!r.at_boundary());
    }
}
