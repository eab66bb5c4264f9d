//! File handles: small integers the kernel passes back with every request on an open file
//! or directory, each naming a value here until RELEASE; and the kernel passthrough
//! backing ids of the nodes with open files.

use std::collections::HashMap;

/// A table of open handles; freed numbers are reused.
#[derive(Debug)]
pub(crate) struct Handles<T> {
    slots: Vec<Option<T>>,
    free: Vec<usize>,
}

impl<T> Handles<T> {
    /// An empty table with room for `capacity` handles before it grows.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            slots: Vec::with_capacity(capacity),
            free: Vec::with_capacity(capacity),
        }
    }

    /// Stores `value`; returns its handle.
    pub(crate) fn insert(&mut self, value: T) -> u64 {
        if let Some(i) = self.free.pop() {
            if let Some(s) = self.slots.get_mut(i) {
                *s = Some(value);
                return i as u64;
            }
        }
        self.slots.push(Some(value));
        (self.slots.len() - 1) as u64
    }

    /// The value of handle `fh`.
    pub(crate) fn get(&self, fh: u64) -> Option<&T> {
        self.slots.get(usize::try_from(fh).ok()?)?.as_ref()
    }

    /// Takes handle `fh` out of the table.
    pub(crate) fn remove(&mut self, fh: u64) -> Option<T> {
        let i = usize::try_from(fh).ok()?;
        let v = self.slots.get_mut(i)?.take()?;
        self.free.push(i);
        Some(v)
    }

    /// How many handles are open.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Takes every value out (at unmount).
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        self.free.clear();
        self.slots.drain(..).flatten()
    }
}

/// Kernel passthrough backing ids, one per node with passthrough files open, each counting
/// the open files that use it.
///
/// One id per node, shared by its open files: the kernel refuses (EBUSY, which `open(2)`
/// reports as EIO) a passthrough open whose backing file differs from the one the inode's
/// other open files already use, so one id per open would break concurrent opens of a file.
/// The id is closed at the RELEASE of the last open file using it; the kernel keeps its own
/// reference for files already open, and a RELEASE comes only after the kernel let go of
/// that file, so a node whose count dropped to 0 has no open file left on the old id.
#[derive(Debug, Default)]
pub(crate) struct Backings {
    by_node: HashMap<u64, (i32, u32)>,
}

impl Backings {
    /// One more open file of `node` on its id, if it has one.
    pub(crate) fn acquire(&mut self, node: u64) -> Option<i32> {
        let (id, opens) = self.by_node.get_mut(&node)?;
        *opens += 1;
        Some(*id)
    }

    /// `node`'s first open file, on the new id `id`.
    pub(crate) fn insert(&mut self, node: u64, id: i32) {
        self.by_node.insert(node, (id, 1));
    }

    /// An open file of `node` on its id is released: the id to close if it was the last.
    pub(crate) fn release(&mut self, node: u64) -> Option<i32> {
        let (id, opens) = self.by_node.get_mut(&node)?;
        *opens = opens.saturating_sub(1);
        if *opens > 0 {
            return None;
        }
        let id = *id;
        self.by_node.remove(&node);
        Some(id)
    }

    /// How many ids are registered.
    pub(crate) fn len(&self) -> usize {
        self.by_node.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backing_ids_are_shared_per_node_and_closed_by_the_last_release() {
        let mut b = Backings::default();
        assert_eq!(b.acquire(5), None, "no id yet: register one");
        b.insert(5, 40);
        assert_eq!(b.acquire(5), Some(40));
        assert_eq!(b.acquire(5), Some(40));
        assert_eq!(b.acquire(6), None);
        b.insert(6, 41);
        assert_eq!(b.len(), 2);
        assert_eq!(b.release(5), None);
        assert_eq!(b.release(5), None);
        assert_eq!(b.release(5), Some(40), "the last open closes it");
        assert_eq!(b.release(5), None, "once");
        assert_eq!(b.acquire(5), None, "a later open registers anew");
        assert_eq!(b.release(6), Some(41));
        assert_eq!(b.len(), 0);
        assert_eq!(b.release(7), None);
    }

    #[test]
    fn insert_get_remove_reuse() {
        let mut h = Handles::with_capacity(1);
        let a = h.insert("a");
        let b = h.insert("b");
        assert_ne!(a, b);
        assert_eq!(h.get(a), Some(&"a"));
        assert_eq!(h.remove(a), Some("a"));
        assert_eq!(h.remove(a), None);
        assert_eq!(h.get(a), None);
        assert_eq!(h.len(), 1);
        assert_eq!(h.insert("c"), a);
        assert_eq!(h.get(99), None);
        assert_eq!(h.drain().count(), 2);
        assert_eq!(h.len(), 0);
    }
}
