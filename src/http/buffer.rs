//! The bytes received on a connection and not consumed yet. No I/O here:
//! a worker reads into [`ReadBuf::spare`] and [`ReadBuf::commit`]s what it
//! read; the parsers look at [`ReadBuf::unread`] and [`ReadBuf::consume`]
//! what they used.

use std::mem::MaybeUninit;

#[derive(Default, Debug)]
pub struct ReadBuf {
    data: Vec<u8>,
    start: usize,
}

impl ReadBuf {
    pub fn with_capacity(capacity: usize) -> ReadBuf {
        ReadBuf { data: Vec::with_capacity(capacity), start: 0 }
    }

    /// A buffer over storage that another connection gave back (its
    /// contents are dropped).
    pub fn reuse(mut storage: Vec<u8>) -> ReadBuf {
        storage.clear();
        ReadBuf { data: storage, start: 0 }
    }

    pub fn unread(&self) -> &[u8] {
        &self.data[self.start..]
    }

    /// For decoders that work in place (WebSocket unmasking).
    pub fn unread_mut(&mut self) -> &mut [u8] {
        &mut self.data[self.start..]
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.data.len()
    }

    pub fn capacity(&self) -> usize {
        self.data.capacity()
    }

    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.data.len());
        if self.start == self.data.len() {
            self.data.clear();
            self.start = 0;
        }
    }

    /// Room for up to `max` more bytes after the unread ones, not
    /// initialised: a read fills a prefix of it, then [`ReadBuf::commit`]s.
    /// Unread bytes move to the front once half the buffer is spent, so a
    /// buffer read into again and again never grows without bound.
    pub fn spare(&mut self, max: usize) -> &mut [MaybeUninit<u8>] {
        if self.start > 0 && self.start * 2 >= self.data.len() {
            self.data.drain(..self.start);
            self.start = 0;
        }
        self.data.reserve(max);
        let spare = self.data.spare_capacity_mut();
        let len = spare.len().min(max);
        &mut spare[..len]
    }

    /// Takes in the first `n` bytes of the last [`ReadBuf::spare`].
    ///
    /// # Safety
    /// Those `n` bytes must have been written since.
    pub unsafe fn commit(&mut self, n: usize) {
        let len = self.data.len() + n.min(self.data.capacity() - self.data.len());
        // SAFETY: within capacity, and the caller wrote these bytes.
        unsafe { self.data.set_len(len) };
    }

    /// Appends bytes (tests, and data that arrives already in memory).
    pub fn extend(&mut self, bytes: &[u8]) {
        let spare = self.spare(bytes.len());
        for (slot, b) in spare.iter_mut().zip(bytes) {
            slot.write(*b);
        }
        // SAFETY: the loop wrote `bytes.len()` bytes (`spare` is at least
        // that long: it was reserved for them).
        unsafe { self.commit(bytes.len()) };
    }

    /// The storage, for another connection to read into, when nothing is
    /// left unread in it.
    pub fn take_storage(&mut self) -> Option<Vec<u8>> {
        if !self.is_empty() || self.data.capacity() == 0 {
            return None;
        }
        Some(std::mem::take(&mut self.data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_append_and_consumed_bytes_make_room() {
        let mut b = ReadBuf::default();
        b.extend(b"hello world");
        b.consume(6);
        assert_eq!(b.unread(), b"world");
        // More than half spent: the next read moves the rest to the front.
        b.extend(b"!");
        assert_eq!(b.unread(), b"world!");
        b.consume(6);
        assert!(b.is_empty());
        assert!(b.take_storage().is_some());
        assert_eq!(b.capacity(), 0);
        assert!(b.take_storage().is_none());
    }

    #[test]
    fn a_buffer_with_unread_bytes_keeps_its_storage() {
        let mut b = ReadBuf::reuse(Vec::with_capacity(64));
        b.extend(b"GET");
        assert!(b.take_storage().is_none());
    }
}
