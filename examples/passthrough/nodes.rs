//! FUSE node ids for backing inodes, with lookup counting.
//!
//! Each node keeps an `O_PATH | O_NOFOLLOW` descriptor of its backing inode rather than a
//! path: every later operation is relative to a descriptor (`statx(fd, "")`,
//! `openat2(dirfd, name, RESOLVE_BENEATH)`, `linkat(fd, "")`, `/proc/self/fd/N`), so
//! renames anywhere above a node — through the mount or behind its back — never make it
//! point at another file, no path is ever walked again (nothing to race a symlink into), a
//! file unlinked while open stays reachable, and the inode number cannot be reused by the
//! backing filesystem while the kernel still knows the node. The price is one descriptor
//! per node the kernel holds (`RLIMIT_NOFILE` is raised at start).
//!
//! Node ids are slot indices plus 2 (1 is the root). A slot is reused only after the
//! kernel forgot its node (lookup count 0), and then with a new generation, so
//! `(node id, generation)` is never handed out twice for different inodes
//! (fuse-protocol.md §4.5). Two names of one inode (hard links) are one node: the table is
//! also keyed by `(st_dev, st_ino)`.
//!
//! A request that uses a node holds a clone of its descriptor's `Arc` for as long as it
//! runs, so a node forgotten meanwhile (FORGET can follow an interrupted request at once)
//! keeps its descriptor open, and its number cannot be reused for another file, until the
//! last request using it has ended — which is after its ring operations completed (an
//! interrupted request's future runs until they have).

use std::collections::HashMap;
use std::sync::Arc;

use rustix::fd::OwnedFd;

/// The root's node id.
pub(crate) const ROOT: u64 = 1;

/// A backing inode the kernel knows.
#[derive(Debug)]
struct Node {
    fd: Arc<OwnedFd>,
    key: (u64, u64),
    nlookup: u64,
    generation: u64,
}

#[derive(Debug)]
enum Slot {
    Used(Node),
    /// Free; the next node here gets `generation`.
    Free {
        generation: u64,
    },
}

/// The node table.
#[derive(Debug)]
pub(crate) struct Nodes {
    root: Arc<OwnedFd>,
    slots: Vec<Slot>,
    free: Vec<usize>,
    by_key: HashMap<(u64, u64), usize>,
}

impl Nodes {
    /// A table holding only the root, `root` (an `O_PATH` directory descriptor), with room
    /// for `capacity` nodes before it grows.
    pub(crate) fn new(root: OwnedFd, capacity: usize) -> Self {
        Self {
            root: Arc::new(root),
            slots: Vec::with_capacity(capacity),
            free: Vec::with_capacity(capacity),
            by_key: HashMap::with_capacity(capacity),
        }
    }

    fn index(id: u64) -> Option<usize> {
        usize::try_from(id.checked_sub(2)?).ok()
    }

    fn node(&self, id: u64) -> Option<&Node> {
        match self.slots.get(Self::index(id)?)? {
            Slot::Used(n) => Some(n),
            Slot::Free { .. } => None,
        }
    }

    /// The descriptor of node `id`, shared with the table.
    pub(crate) fn fd(&self, id: u64) -> Option<Arc<OwnedFd>> {
        if id == ROOT {
            return Some(Arc::clone(&self.root));
        }
        self.node(id).map(|n| Arc::clone(&n.fd))
    }

    /// The backing device (`st_dev`) of node `id` (not the root).
    pub(crate) fn dev(&self, id: u64) -> Option<u64> {
        self.node(id).map(|n| n.key.0)
    }

    /// Counts one more lookup of the inode `key` whose descriptor is `fd`: an existing node
    /// (then `fd` is handed back to be closed), or a new one. Returns the node id, its
    /// generation and the descriptor not needed.
    pub(crate) fn add_lookup(
        &mut self,
        fd: OwnedFd,
        key: (u64, u64),
    ) -> (u64, u64, Option<OwnedFd>) {
        if let Some(&i) = self.by_key.get(&key) {
            if let Some(Slot::Used(n)) = self.slots.get_mut(i) {
                n.nlookup += 1;
                return (i as u64 + 2, n.generation, Some(fd));
            }
        }
        let (i, generation) = match self.free.pop() {
            Some(i) => match self.slots.get(i) {
                Some(Slot::Free { generation }) => (i, *generation),
                _ => (self.slots.len(), 1),
            },
            None => (self.slots.len(), 1),
        };
        let node = Slot::Used(Node {
            fd: Arc::new(fd),
            key,
            nlookup: 1,
            generation,
        });
        if i == self.slots.len() {
            self.slots.push(node);
        } else if let Some(s) = self.slots.get_mut(i) {
            *s = node;
        }
        self.by_key.insert(key, i);
        (i as u64 + 2, generation, None)
    }

    /// The kernel drops `n` lookups of `id`; at zero the node goes, and its descriptor
    /// closes once no request uses it any more. The root is never forgotten.
    pub(crate) fn forget(&mut self, id: u64, n: u64) {
        let Some(i) = Self::index(id) else { return };
        let Some(Slot::Used(node)) = self.slots.get_mut(i) else {
            return;
        };
        node.nlookup = node.nlookup.saturating_sub(n);
        if node.nlookup > 0 {
            return;
        }
        let key = node.key;
        let next = node.generation.wrapping_add(1);
        if self.by_key.get(&key) == Some(&i) {
            self.by_key.remove(&key);
        }
        if let Some(slot) = self.slots.get_mut(i) {
            *slot = Slot::Free { generation: next };
        }
        self.free.push(i);
    }

    /// How many nodes besides the root the kernel holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_key.len()
    }

    /// The lookup count of `id` (tests).
    #[cfg(test)]
    fn nlookup(&self, id: u64) -> Option<u64> {
        self.node(id).map(|n| n.nlookup)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd() -> OwnedFd {
        std::fs::File::open("/").unwrap().into()
    }

    #[test]
    fn lookups_count_and_forget_frees_with_a_new_generation() {
        let mut t = Nodes::new(fd(), 4);
        assert!(t.fd(ROOT).is_some());
        let (a, ga, extra) = t.add_lookup(fd(), (1, 10));
        assert!(extra.is_none());
        assert_eq!((a, ga), (2, 1));
        // A second name of the same inode: same node, the new descriptor handed back.
        let (a2, ga2, extra) = t.add_lookup(fd(), (1, 10));
        assert_eq!((a2, ga2), (a, ga));
        assert!(extra.is_some());
        assert_eq!(t.nlookup(a), Some(2));
        let (b, _, _) = t.add_lookup(fd(), (1, 11));
        assert_eq!(b, 3);
        t.forget(a, 1);
        assert!(t.fd(a).is_some());
        t.forget(a, 1);
        assert!(t.fd(a).is_none());
        assert_eq!(t.len(), 1);
        // The slot comes back with the next generation, for another inode.
        let (c, gc, _) = t.add_lookup(fd(), (1, 12));
        assert_eq!((c, gc), (a, ga + 1));
        // Forgetting unknown nodes or the root does nothing.
        t.forget(ROOT, 1);
        t.forget(99, 1);
        t.forget(0, 1);
        assert!(t.fd(ROOT).is_some());
        assert!(t.fd(99).is_none());
    }

    #[test]
    fn a_descriptor_in_use_outlives_its_forget() {
        let mut table = Nodes::new(fd(), 2);
        let (old, _, _) = table.add_lookup(fd(), (3, 3));
        let held = table.fd(old).unwrap();
        table.forget(old, 1);
        assert!(table.fd(old).is_none());
        // Still open for the request holding it: its number is not reused.
        assert!(rustix::fs::fstat(&*held).is_ok());
        let (new, _, extra) = table.add_lookup(fd(), (3, 3));
        assert!(extra.is_none(), "a new lookup makes a new node");
        assert_eq!(new, old, "the slot is free again");
        assert_ne!(
            rustix::fd::AsRawFd::as_raw_fd(&*held),
            rustix::fd::AsRawFd::as_raw_fd(&*table.fd(new).unwrap())
        );
    }

    #[test]
    fn forget_more_than_counted_frees_once() {
        let mut t = Nodes::new(fd(), 0);
        let (a, _, _) = t.add_lookup(fd(), (2, 2));
        t.forget(a, 5);
        t.forget(a, 1);
        assert_eq!(t.len(), 0);
        assert_eq!(t.free.len(), 1);
    }
}
