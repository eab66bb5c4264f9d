//! The filesystem both adapters serve: one core, library-independent.
//!
//! [`MemCore`] is a small in-memory filesystem (inodes in a table, directories as hash maps
//! plus a slot list for stable READDIR cookies, file contents in a `Vec<u8>`). [`NullCore`]
//! answers every request from constants, to isolate the cost of the library from the cost
//! of the filesystem. Both are plain `&mut self` state machines: the ringfuse adapter owns
//! one, the fuser adapter (whose methods take `&self`) keeps it behind a `Mutex`.
//!
//! Errors are raw errno values; each adapter converts them to its library's type.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

/// The root's node id.
pub const ROOT: u64 = 1;
/// Every timestamp the filesystems report (2023-11-14T22:13:20Z).
pub const TIME_SECS: i64 = 1_700_000_000;
/// `st_blksize` reported by both adapters.
pub const BLKSIZE: u32 = 4096;

/// File types the core knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
}

/// Library-neutral attributes; each adapter turns them into its own type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub size: u64,
    pub kind: Kind,
    /// Permission bits only.
    pub perm: u32,
    pub nlink: u32,
}

impl Attr {
    /// 512-byte blocks.
    pub fn blocks(&self) -> u64 {
        self.size.div_ceil(512)
    }
}

/// What a filesystem core does; the adapters call one method per FUSE request.
pub trait Backend: Send + 'static {
    fn lookup(&mut self, parent: u64, name: &[u8]) -> Result<(Attr, u64), i32>;
    fn forget(&mut self, ino: u64, nlookup: u64);
    fn getattr(&mut self, ino: u64) -> Result<Attr, i32>;
    fn setattr(&mut self, ino: u64, size: Option<u64>, perm: Option<u32>) -> Result<Attr, i32>;
    /// Checks that `ino` can be opened (as a file, or as a directory with `dir`).
    fn open(&mut self, ino: u64, dir: bool) -> Result<(), i32>;
    /// The bytes at `offset` (at most `size`).
    fn read(&mut self, ino: u64, offset: u64, size: u32) -> Result<&[u8], i32>;
    fn write(&mut self, ino: u64, offset: u64, data: &[u8]) -> Result<u32, i32>;
    fn create(&mut self, parent: u64, name: &[u8], perm: u32) -> Result<(Attr, u64), i32>;
    fn mkdir(&mut self, parent: u64, name: &[u8], perm: u32) -> Result<(Attr, u64), i32>;
    fn unlink(&mut self, parent: u64, name: &[u8]) -> Result<(), i32>;
    fn rmdir(&mut self, parent: u64, name: &[u8]) -> Result<(), i32>;
    /// Lists `ino` from cookie `offset`: `add(ino, kind, next_cookie, name)` returns false
    /// when the reply is full.
    fn readdir(
        &mut self,
        ino: u64,
        offset: u64,
        add: impl FnMut(u64, Kind, u64, &[u8]) -> bool,
    ) -> Result<(), i32>;
}

/// What the server creates before mounting (outside any timing), the same for every
/// target: `/file` (empty), `/w` (empty directory), `/d` with `dir_entries` empty files
/// `f000000...`, and `/data` of `data_size` bytes when not 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    pub dir_entries: u32,
    pub data_size: u64,
}

/// The name of entry `i` of `/d`.
pub fn dir_entry_name(i: u32, buf: &mut [u8; 16]) -> &[u8] {
    number_name(b'f', u64::from(i), buf)
}

/// `prefix` followed by `n` with at least six digits, in `buf`.
pub fn number_name(prefix: u8, n: u64, buf: &mut [u8; 16]) -> &[u8] {
    let mut digits = [0u8; 20];
    let mut len = 0;
    let mut v = n;
    loop {
        digits[len] = b'0' + (v % 10) as u8;
        len += 1;
        v /= 10;
        if v == 0 && len >= 6 {
            break;
        }
    }
    let len = len.min(15);
    buf[0] = prefix;
    for i in 0..len {
        buf[1 + i] = digits[len - 1 - i];
    }
    &buf[..=len]
}

// ---------------------------------------------------------------------------------------
// MemCore

/// FxHash: the names are trusted and short; SipHash would dominate a lookup.
#[derive(Default)]
pub struct Fx(u64);

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type Names = HashMap<Arc<[u8]>, u32, BuildHasherDefault<Fx>>;

#[derive(Default)]
struct Dir {
    parent: u64,
    names: Names,
    /// Entry slots in creation order; a READDIR cookie is a slot position, so a listing
    /// stays stable while other entries come and go.
    slots: Vec<Option<(Arc<[u8]>, u64)>>,
    free: Vec<u32>,
}

struct Inode {
    kind: Kind,
    perm: u32,
    nlink: u32,
    nlookup: u64,
    generation: u64,
    data: Vec<u8>,
    dir: Option<Box<Dir>>,
}

/// The in-memory filesystem.
pub struct MemCore {
    inodes: Vec<Option<Inode>>,
    free: Vec<u64>,
    generation: u64,
}

const ENOENT: i32 = libc::ENOENT;

impl MemCore {
    /// A filesystem holding `layout`.
    pub fn new(layout: Layout) -> Self {
        let mut core = Self {
            inodes: Vec::new(),
            free: Vec::new(),
            generation: 1,
        };
        core.inodes.push(None); // node 0 is never valid
        core.inodes.push(Some(Inode {
            kind: Kind::Dir,
            perm: 0o755,
            nlink: 2,
            nlookup: 1,
            generation: 1,
            data: Vec::new(),
            dir: Some(Box::new(Dir {
                parent: ROOT,
                ..Dir::default()
            })),
        }));
        let setup = |r: Result<(Attr, u64), i32>| r.map(|(a, _)| a.ino).unwrap_or(0);
        setup(core.create(ROOT, b"file", 0o644));
        setup(core.mkdir(ROOT, b"w", 0o755));
        let d = setup(core.mkdir(ROOT, b"d", 0o755));
        let mut buf = [0u8; 16];
        for i in 0..layout.dir_entries {
            let name = dir_entry_name(i, &mut buf);
            setup(core.create(d, name, 0o644));
        }
        if layout.data_size > 0 {
            let ino = setup(core.create(ROOT, b"data", 0o644));
            if let Some(Some(node)) = core.inodes.get_mut(ino as usize) {
                let len = usize::try_from(layout.data_size).unwrap_or(usize::MAX);
                node.data = vec![0x5a; len];
            }
        }
        // The setup's entries were never handed to the kernel.
        for node in core.inodes.iter_mut().skip(2).flatten() {
            node.nlookup = 0;
        }
        core
    }

    fn node(&self, ino: u64) -> Result<&Inode, i32> {
        match self.inodes.get(ino as usize) {
            Some(Some(n)) => Ok(n),
            _ => Err(ENOENT),
        }
    }

    fn node_mut(&mut self, ino: u64) -> Result<&mut Inode, i32> {
        match self.inodes.get_mut(ino as usize) {
            Some(Some(n)) => Ok(n),
            _ => Err(ENOENT),
        }
    }

    fn attr_of(ino: u64, n: &Inode) -> Attr {
        Attr {
            ino,
            size: match n.kind {
                Kind::File => n.data.len() as u64,
                Kind::Dir => 4096,
            },
            kind: n.kind,
            perm: n.perm,
            nlink: n.nlink,
        }
    }

    fn dir_mut(&mut self, ino: u64) -> Result<&mut Dir, i32> {
        self.node_mut(ino)?.dir.as_deref_mut().ok_or(libc::ENOTDIR)
    }

    fn new_node(&mut self, node: Inode) -> u64 {
        if let Some(ino) = self.free.pop() {
            self.inodes[ino as usize] = Some(node);
            ino
        } else {
            self.inodes.push(Some(node));
            (self.inodes.len() - 1) as u64
        }
    }

    fn add(&mut self, parent: u64, name: &[u8], kind: Kind, perm: u32) -> Result<(Attr, u64), i32> {
        if name.len() > 255 {
            return Err(libc::ENAMETOOLONG);
        }
        if self.dir_mut(parent)?.names.contains_key(name) {
            return Err(libc::EEXIST);
        }
        self.generation += 1;
        let generation = self.generation;
        let node = Inode {
            kind,
            perm: perm & 0o7777,
            nlink: if kind == Kind::Dir { 2 } else { 1 },
            nlookup: 1,
            generation,
            data: Vec::new(),
            dir: (kind == Kind::Dir).then(|| {
                Box::new(Dir {
                    parent,
                    ..Dir::default()
                })
            }),
        };
        let ino = self.new_node(node);
        let dir = self.dir_mut(parent)?;
        let name: Arc<[u8]> = Arc::from(name);
        let slot = match dir.free.pop() {
            Some(s) => {
                dir.slots[s as usize] = Some((Arc::clone(&name), ino));
                s
            }
            None => {
                dir.slots.push(Some((Arc::clone(&name), ino)));
                (dir.slots.len() - 1) as u32
            }
        };
        dir.names.insert(name, slot);
        if kind == Kind::Dir {
            self.node_mut(parent)?.nlink += 1;
        }
        let n = self.node(ino)?;
        Ok((Self::attr_of(ino, n), generation))
    }

    fn remove(&mut self, parent: u64, name: &[u8], want_dir: bool) -> Result<(), i32> {
        let dir = self.dir_mut(parent)?;
        let &slot = dir.names.get(name).ok_or(ENOENT)?;
        let ino = dir.slots[slot as usize].as_ref().map_or(0, |s| s.1);
        let node = self.node(ino)?;
        match (node.kind, want_dir) {
            (Kind::Dir, false) => return Err(libc::EISDIR),
            (Kind::File, true) => return Err(libc::ENOTDIR),
            (Kind::Dir, true) if node.dir.as_ref().is_some_and(|d| !d.names.is_empty()) => {
                return Err(libc::ENOTEMPTY);
            }
            _ => {}
        }
        let dir = self.dir_mut(parent)?;
        dir.names.remove(name);
        dir.slots[slot as usize] = None;
        dir.free.push(slot);
        if want_dir {
            self.node_mut(parent)?.nlink -= 1;
        }
        let node = self.node_mut(ino)?;
        node.nlink = 0;
        self.maybe_free(ino);
        Ok(())
    }

    fn maybe_free(&mut self, ino: u64) {
        if ino == ROOT {
            return;
        }
        if let Ok(n) = self.node(ino)
            && n.nlink == 0
            && n.nlookup == 0
        {
            self.inodes[ino as usize] = None;
            self.free.push(ino);
        }
    }
}

impl Backend for MemCore {
    fn lookup(&mut self, parent: u64, name: &[u8]) -> Result<(Attr, u64), i32> {
        let dir = self.node(parent)?.dir.as_deref().ok_or(libc::ENOTDIR)?;
        let ino = if name == b"." {
            parent
        } else if name == b".." {
            dir.parent
        } else {
            let &slot = dir.names.get(name).ok_or(ENOENT)?;
            dir.slots[slot as usize].as_ref().map_or(0, |s| s.1)
        };
        let node = self.node_mut(ino)?;
        node.nlookup += 1;
        Ok((Self::attr_of(ino, node), node.generation))
    }

    fn forget(&mut self, ino: u64, nlookup: u64) {
        if let Ok(n) = self.node_mut(ino) {
            n.nlookup = n.nlookup.saturating_sub(nlookup);
            self.maybe_free(ino);
        }
    }

    fn getattr(&mut self, ino: u64) -> Result<Attr, i32> {
        self.node(ino).map(|n| Self::attr_of(ino, n))
    }

    fn setattr(&mut self, ino: u64, size: Option<u64>, perm: Option<u32>) -> Result<Attr, i32> {
        let n = self.node_mut(ino)?;
        if let Some(size) = size {
            if n.kind == Kind::Dir {
                return Err(libc::EISDIR);
            }
            n.data
                .resize(usize::try_from(size).map_err(|_| libc::EFBIG)?, 0);
        }
        if let Some(perm) = perm {
            n.perm = perm & 0o7777;
        }
        Ok(Self::attr_of(ino, n))
    }

    fn open(&mut self, ino: u64, dir: bool) -> Result<(), i32> {
        match (self.node(ino)?.kind, dir) {
            (Kind::Dir, false) => Err(libc::EISDIR),
            (Kind::File, true) => Err(libc::ENOTDIR),
            _ => Ok(()),
        }
    }

    fn read(&mut self, ino: u64, offset: u64, size: u32) -> Result<&[u8], i32> {
        let n = self.node(ino)?;
        if n.kind == Kind::Dir {
            return Err(libc::EISDIR);
        }
        let len = n.data.len();
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(len);
        let end = start.saturating_add(size as usize).min(len);
        Ok(&n.data[start..end])
    }

    fn write(&mut self, ino: u64, offset: u64, data: &[u8]) -> Result<u32, i32> {
        let n = self.node_mut(ino)?;
        if n.kind == Kind::Dir {
            return Err(libc::EISDIR);
        }
        let start = usize::try_from(offset).map_err(|_| libc::EFBIG)?;
        let end = start.checked_add(data.len()).ok_or(libc::EFBIG)?;
        if end > n.data.len() {
            n.data.resize(end, 0);
        }
        n.data[start..end].copy_from_slice(data);
        Ok(data.len() as u32)
    }

    fn create(&mut self, parent: u64, name: &[u8], perm: u32) -> Result<(Attr, u64), i32> {
        self.add(parent, name, Kind::File, perm)
    }

    fn mkdir(&mut self, parent: u64, name: &[u8], perm: u32) -> Result<(Attr, u64), i32> {
        self.add(parent, name, Kind::Dir, perm)
    }

    fn unlink(&mut self, parent: u64, name: &[u8]) -> Result<(), i32> {
        self.remove(parent, name, false)
    }

    fn rmdir(&mut self, parent: u64, name: &[u8]) -> Result<(), i32> {
        self.remove(parent, name, true)
    }

    fn readdir(
        &mut self,
        ino: u64,
        offset: u64,
        mut add: impl FnMut(u64, Kind, u64, &[u8]) -> bool,
    ) -> Result<(), i32> {
        let dir = self.node(ino)?.dir.as_deref().ok_or(libc::ENOTDIR)?;
        // Position 0 is ".", 1 is "..", 2 + k is slot k; the cookie of a position is
        // position + 1 (never 0), so a listing continues at position `offset`.
        let mut pos = offset;
        loop {
            let next = pos + 1;
            let more = match pos {
                0 => add(ino, Kind::Dir, next, b"."),
                1 => add(dir.parent, Kind::Dir, next, b".."),
                p => {
                    let Some(slot) = dir.slots.get((p - 2) as usize) else {
                        return Ok(());
                    };
                    match slot {
                        Some((name, child)) => {
                            let kind = match self.inodes.get(*child as usize) {
                                Some(Some(n)) => n.kind,
                                _ => Kind::File,
                            };
                            add(*child, kind, next, name)
                        }
                        None => true,
                    }
                }
            };
            if !more {
                return Ok(());
            }
            pos = next;
        }
    }
}

// ---------------------------------------------------------------------------------------
// NullCore

/// Answers from constants: every regular file is node 2 (`data_size` bytes of zeros,
/// writes are accepted and dropped), `/d` is node 3 listing `dir_entries` synthesized names,
/// `/w` is node 4. LOOKUP finds `file`, `data`, `d`, `w` and every name starting with `f`;
/// other names are ENOENT (so O_EXCL creates succeed).
pub struct NullCore {
    layout: Layout,
}

const NULL_FILE: u64 = 2;
const NULL_D: u64 = 3;
const NULL_W: u64 = 4;
static ZEROS: [u8; 1 << 20] = [0; 1 << 20];

impl NullCore {
    pub fn new(layout: Layout) -> Self {
        Self { layout }
    }

    fn attr(&self, ino: u64) -> Attr {
        match ino {
            ROOT | NULL_D | NULL_W => Attr {
                ino,
                size: 4096,
                kind: Kind::Dir,
                perm: 0o755,
                nlink: 2,
            },
            _ => Attr {
                ino: NULL_FILE,
                size: self.layout.data_size,
                kind: Kind::File,
                perm: 0o644,
                nlink: 1,
            },
        }
    }
}

impl Backend for NullCore {
    fn lookup(&mut self, _parent: u64, name: &[u8]) -> Result<(Attr, u64), i32> {
        let ino = match name {
            b"d" => NULL_D,
            b"w" => NULL_W,
            b"." | b".." => ROOT,
            b"file" | b"data" => NULL_FILE,
            [b'f', ..] => NULL_FILE,
            _ => return Err(ENOENT),
        };
        Ok((self.attr(ino), 1))
    }

    fn forget(&mut self, _ino: u64, _nlookup: u64) {}

    fn getattr(&mut self, ino: u64) -> Result<Attr, i32> {
        Ok(self.attr(ino))
    }

    fn setattr(&mut self, ino: u64, _size: Option<u64>, _perm: Option<u32>) -> Result<Attr, i32> {
        Ok(self.attr(ino))
    }

    fn open(&mut self, _ino: u64, _dir: bool) -> Result<(), i32> {
        Ok(())
    }

    fn read(&mut self, _ino: u64, offset: u64, size: u32) -> Result<&[u8], i32> {
        let left = self.layout.data_size.saturating_sub(offset);
        let n = (size as usize).min(ZEROS.len()).min(left as usize);
        Ok(&ZEROS[..n])
    }

    fn write(&mut self, _ino: u64, _offset: u64, data: &[u8]) -> Result<u32, i32> {
        Ok(data.len() as u32)
    }

    fn create(&mut self, _parent: u64, _name: &[u8], _perm: u32) -> Result<(Attr, u64), i32> {
        Ok((self.attr(NULL_FILE), 1))
    }

    fn mkdir(&mut self, _parent: u64, _name: &[u8], _perm: u32) -> Result<(Attr, u64), i32> {
        Ok((self.attr(NULL_W), 1))
    }

    fn unlink(&mut self, _parent: u64, _name: &[u8]) -> Result<(), i32> {
        Ok(())
    }

    fn rmdir(&mut self, _parent: u64, _name: &[u8]) -> Result<(), i32> {
        Ok(())
    }

    fn readdir(
        &mut self,
        ino: u64,
        offset: u64,
        mut add: impl FnMut(u64, Kind, u64, &[u8]) -> bool,
    ) -> Result<(), i32> {
        let entries: u64 = match ino {
            NULL_D => u64::from(self.layout.dir_entries),
            _ => 0,
        };
        let mut pos = offset;
        let mut buf = [0u8; 16];
        while pos < entries + 2 {
            let next = pos + 1;
            let more = match pos {
                0 => add(ino, Kind::Dir, next, b"."),
                1 => add(ROOT, Kind::Dir, next, b".."),
                p => add(
                    NULL_FILE,
                    Kind::File,
                    next,
                    dir_entry_name((p - 2) as u32, &mut buf),
                ),
            };
            if !more {
                break;
            }
            pos = next;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let mut b = [0u8; 16];
        assert_eq!(dir_entry_name(7, &mut b), b"f000007");
        assert_eq!(number_name(b'c', 12_345_678, &mut b), b"c12345678");
    }

    #[test]
    fn mem_create_lookup_unlink_readdir() {
        let mut m = MemCore::new(Layout {
            dir_entries: 3,
            data_size: 10,
        });
        let (d, _) = m.lookup(ROOT, b"d").unwrap();
        let mut seen = Vec::new();
        m.readdir(d.ino, 0, |_, _, c, n| {
            seen.push((c, n.to_vec()));
            true
        })
        .unwrap();
        assert_eq!(seen.len(), 5);
        assert_eq!(seen[4].1, b"f000002");
        // continue after the third entry
        let mut rest = 0;
        m.readdir(d.ino, seen[2].0, |_, _, _, _| {
            rest += 1;
            true
        })
        .unwrap();
        assert_eq!(rest, 2);
        let (w, _) = m.lookup(ROOT, b"w").unwrap();
        let (f, _) = m.create(w.ino, b"x", 0o644).unwrap();
        assert_eq!(m.create(w.ino, b"x", 0o644), Err(libc::EEXIST));
        assert_eq!(m.write(f.ino, 4096, b"abc").unwrap(), 3);
        assert_eq!(m.getattr(f.ino).unwrap().size, 4099);
        assert_eq!(m.read(f.ino, 4097, 10).unwrap(), b"bc");
        m.unlink(w.ino, b"x").unwrap();
        assert!(m.getattr(f.ino).is_ok(), "still looked up");
        m.forget(f.ino, 1);
        assert_eq!(m.getattr(f.ino), Err(libc::ENOENT));
        assert_eq!(m.lookup(w.ino, b"x"), Err(libc::ENOENT));
        let (data, _) = m.lookup(ROOT, b"data").unwrap();
        assert_eq!(data.size, 10);
    }

    #[test]
    fn null_readdir_and_lookup() {
        let mut n = NullCore::new(Layout {
            dir_entries: 4,
            data_size: 100,
        });
        let mut count = 0;
        n.readdir(NULL_D, 0, |_, _, _, _| {
            count += 1;
            true
        })
        .unwrap();
        assert_eq!(count, 6);
        assert!(n.lookup(NULL_D, b"f000001").is_ok());
        assert_eq!(n.lookup(NULL_D, b"m000001"), Err(libc::ENOENT));
        assert_eq!(n.read(2, 90, 4096).unwrap().len(), 10);
    }
}
