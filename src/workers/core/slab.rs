//! Generational tables: an event-driven worker's connections by epoll token,
//! the asgi worker's application calls by key. A key names a slot and the
//! slot's generation, so a key kept after its entry is gone (an event for a
//! closed connection, a `receive` the app kept after its call ended) finds
//! nothing, even once the slot holds another entry.
//!
//! An entry can be taken out of its slot while something works on it (a
//! gthread thread, the asgi server driving it) and put back after; the slot
//! stays reserved meanwhile, so its key stays valid.

use std::marker::PhantomData;

/// A slot and its generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SlotKey {
    index: u32,
    generation: u32,
}

impl SlotKey {
    pub fn index(self) -> usize {
        self.index as usize
    }

    /// As one number (epoll's user data): the generation in the high half.
    pub fn to_u64(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.index)
    }

    pub fn from_u64(v: u64) -> SlotKey {
        SlotKey { index: (v & 0xffff_ffff) as u32, generation: (v >> 32) as u32 }
    }
}

/// What a table is keyed by: a newtype over [`SlotKey`], so a connection's
/// token cannot be used where a call's key is meant.
pub trait Key: Copy {
    fn from_slot(key: SlotKey) -> Self;
    fn slot(self) -> SlotKey;
}

/// A client connection's epoll token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnToken(SlotKey);

/// An ASGI application call (a request or a WebSocket).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CycleKey(SlotKey);

impl Key for ConnToken {
    fn from_slot(key: SlotKey) -> Self {
        ConnToken(key)
    }
    fn slot(self) -> SlotKey {
        self.0
    }
}

impl Key for CycleKey {
    fn from_slot(key: SlotKey) -> Self {
        CycleKey(key)
    }
    fn slot(self) -> SlotKey {
        self.0
    }
}

impl ConnToken {
    pub fn index(self) -> usize {
        self.0.index()
    }
}

struct Slot<T> {
    generation: u32,
    reserved: bool,
    value: Option<T>,
}

pub struct Slab<K: Key, T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    reserved: usize,
    key: PhantomData<K>,
}

impl<K: Key, T> Default for Slab<K, T> {
    fn default() -> Self {
        Slab { slots: Vec::new(), free: Vec::new(), reserved: 0, key: PhantomData }
    }
}

impl<K: Key, T> Slab<K, T> {
    /// A slot for an entry to come (its key is needed first, e.g. to
    /// register a socket with epoll).
    pub fn reserve(&mut self) -> K {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot { generation: 0, reserved: false, value: None });
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.reserved = true;
        self.reserved += 1;
        K::from_slot(SlotKey { index, generation: slot.generation })
    }

    pub fn insert(&mut self, value: T) -> K {
        let key = self.reserve();
        self.put(key, value);
        key
    }

    fn current(&self, key: K) -> Option<&Slot<T>> {
        let k = key.slot();
        self.slots.get(k.index()).filter(|s| s.reserved && s.generation == k.generation)
    }

    fn current_mut(&mut self, key: K) -> Option<&mut Slot<T>> {
        let k = key.slot();
        self.slots.get_mut(k.index()).filter(|s| s.reserved && s.generation == k.generation)
    }

    /// Frees the slot and returns its entry if it held one; the slot's next
    /// key differs from every earlier one.
    pub fn remove(&mut self, key: K) -> Option<T> {
        let slot = self.current_mut(key)?;
        slot.reserved = false;
        slot.generation = slot.generation.wrapping_add(1);
        let value = slot.value.take();
        self.free.push(key.slot().index);
        self.reserved -= 1;
        value
    }

    pub fn get(&self, key: K) -> Option<&T> {
        self.current(key)?.value.as_ref()
    }

    pub fn get_mut(&mut self, key: K) -> Option<&mut T> {
        self.current_mut(key)?.value.as_mut()
    }

    /// Takes the entry out; the slot stays reserved for [`Slab::put`].
    pub fn take(&mut self, key: K) -> Option<T> {
        self.current_mut(key)?.value.take()
    }

    /// The slot of `key` is reserved but its entry is taken out.
    pub fn is_taken(&self, key: K) -> bool {
        self.current(key).is_some_and(|s| s.value.is_none())
    }

    /// Puts an entry (back) into its reserved slot. A stale key cannot
    /// happen for a slot reserved meanwhile; the entry would be dropped.
    pub fn put(&mut self, key: K, value: T) {
        if let Some(slot) = self.current_mut(key) {
            slot.value = Some(value);
        }
    }

    /// Reserved slots, whether their entries are in or taken out.
    pub fn len(&self) -> usize {
        self.reserved
    }

    pub fn is_empty(&self) -> bool {
        self.reserved == 0
    }

    /// Every entry held (not taken out), with its key.
    pub fn iter(&self) -> impl Iterator<Item = (K, &T)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            let key = K::from_slot(SlotKey { index: i as u32, generation: s.generation });
            s.value.as_ref().filter(|_| s.reserved).map(|v| (key, v))
        })
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (K, &mut T)> {
        self.slots.iter_mut().enumerate().filter_map(|(i, s)| {
            let key = K::from_slot(SlotKey { index: i as u32, generation: s.generation });
            let reserved = s.reserved;
            s.value.as_mut().filter(|_| reserved).map(|v| (key, v))
        })
    }

    /// The keys of the entries held that `pick` chooses.
    pub fn keys_where(&self, mut pick: impl FnMut(&T) -> bool) -> Vec<K> {
        self.iter().filter(|(_, v)| pick(v)).map(|(k, _)| k).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_finds_only_its_own_entry() {
        let mut slab: Slab<ConnToken, &str> = Slab::default();
        let a = slab.reserve();
        slab.put(a, "a");
        assert_eq!(slab.get(a), Some(&"a"));
        let taken = slab.take(a).expect("held");
        assert!(slab.is_taken(a));
        assert!(slab.take(a).is_none());
        slab.put(a, taken);
        assert!(!slab.is_taken(a));
        assert_eq!(slab.iter().count(), 1);
        assert_eq!(slab.remove(a), Some("a"));
        assert!(slab.is_empty());
        // The slot is reused under a new key; the old one finds nothing.
        let b = slab.insert("b");
        assert_eq!(b.index(), a.index());
        assert_ne!(b, a);
        assert!(slab.get(a).is_none() && !slab.is_taken(a) && slab.remove(a).is_none());
        let c = slab.insert("c");
        assert_eq!(slab.keys_where(|v| *v == "c"), vec![c]);
        assert_eq!(slab.len(), 2);
        assert_eq!(ConnToken::from_slot(SlotKey::from_u64(b.slot().to_u64())), b);
    }
}
