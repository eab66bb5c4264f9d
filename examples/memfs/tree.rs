//! The filesystem's state and every operation on it, with no I/O.
//!
//! [`Tree`] is what `fs.rs` calls with its lock held and what the unit tests drive directly.
//! Node ids are handed out by a counter and never reused, so `(node, GENERATION)` is unique
//! for the life of the filesystem. A node lives while it has a name (`nlink > 0`), a lookup
//! the kernel holds, or an open handle; the last of the three to go frees it.

use std::collections::{BTreeMap, HashMap};

use ringfuse::{Attr, Errno, FileType, SetAttr, Statfs, TimeOrNow, Timestamp};

use crate::data::{FileData, PAGE};

/// The root's node id (`FUSE_ROOT_ID`).
pub(crate) const ROOT: u64 = 1;
/// Every node has generation 1: ids are never reused, so the pair stays unique.
pub(crate) const GENERATION: u64 = 1;
/// Longest name (`NAME_MAX`).
pub(crate) const NAME_MAX: usize = 255;
/// Capacity each inode costs, on top of its data.
pub(crate) const INODE_COST: u64 = 256;
/// Largest file size (`MAX_LFS_FILESIZE`).
const MAX_FILE_SIZE: u64 = i64::MAX as u64;

const S_IFMT: u32 = 0o170_000;
const S_ISUID: u32 = 0o4000;
const S_ISGID: u32 = 0o2000;
const S_IXGRP: u32 = 0o010;

/// `renameat2(2)` flags.
pub(crate) const RENAME_NOREPLACE: u32 = 1;
/// `renameat2(2)` flags.
pub(crate) const RENAME_EXCHANGE: u32 = 2;
/// `setxattr(2)` flags.
pub(crate) const XATTR_CREATE: u32 = 1;
/// `setxattr(2)` flags.
pub(crate) const XATTR_REPLACE: u32 = 2;
const XATTR_NAME_MAX: usize = 255;
const XATTR_SIZE_MAX: usize = 65_536;
/// `fallocate(2)` modes.
pub(crate) const FALLOC_FL_KEEP_SIZE: u32 = 1;
/// `fallocate(2)` modes.
pub(crate) const FALLOC_FL_PUNCH_HOLE: u32 = 2;
/// `lseek(2)` whence values the kernel passes on.
pub(crate) const SEEK_DATA: u32 = 3;
/// `lseek(2)` whence values the kernel passes on.
pub(crate) const SEEK_HOLE: u32 = 4;
/// `access(2)` mask bits.
const R_OK: u32 = 4;
const W_OK: u32 = 2;
const X_OK: u32 = 1;

/// Readdir cookies: `.` is 1, `..` is 2, entries count up from 3 per directory.
const COOKIE_DOT: u64 = 1;
const COOKIE_DOTDOT: u64 = 2;
const FIRST_COOKIE: u64 = 3;

/// Who asks (from the request header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Caller {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// A directory: its entries by name, and the same entries in cookie order for READDIR.
#[derive(Debug)]
struct Dir {
    /// The directory this one is in (itself for the root).
    parent: u64,
    /// name → cookie.
    names: BTreeMap<Box<[u8]>, u64>,
    /// cookie → (name, node). The only place the node of an entry is stored.
    entries: BTreeMap<u64, (Box<[u8]>, u64)>,
    /// The next entry's cookie: only grows, so a cookie never names two entries.
    next_cookie: u64,
}

impl Dir {
    fn new(parent: u64) -> Self {
        Self {
            parent,
            names: BTreeMap::new(),
            entries: BTreeMap::new(),
            next_cookie: FIRST_COOKIE,
        }
    }

    fn get(&self, name: &[u8]) -> Option<u64> {
        let cookie = self.names.get(name)?;
        self.entries.get(cookie).map(|&(_, node)| node)
    }

    fn insert(&mut self, name: &[u8], node: u64) {
        let cookie = self.next_cookie;
        self.next_cookie += 1;
        self.names.insert(name.into(), cookie);
        self.entries.insert(cookie, (name.into(), node));
    }

    fn remove(&mut self, name: &[u8]) -> Option<u64> {
        let cookie = self.names.remove(name)?;
        self.entries.remove(&cookie).map(|(_, node)| node)
    }

    /// Points the existing entry `name` at `node` (`RENAME_EXCHANGE` keeps the cookies).
    fn repoint(&mut self, name: &[u8], node: u64) {
        if let Some(entry) = self.names.get(name).and_then(|c| self.entries.get_mut(c)) {
            entry.1 = node;
        }
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[derive(Debug)]
enum Body {
    File(FileData),
    Dir(Dir),
    Symlink(Box<[u8]>),
    /// Fifo, socket or device: attributes only.
    Special,
}

#[derive(Debug)]
struct Inode {
    /// `size` and `blocks` are filled in by [`Inode::attr`]; the rest is kept current.
    attr: Attr,
    /// Lookups the kernel holds (each entry reply adds one, FORGET takes them back).
    lookups: u64,
    /// Open file and directory handles.
    opens: u64,
    xattrs: BTreeMap<Box<[u8]>, Box<[u8]>>,
    body: Body,
}

impl Inode {
    fn attr(&self) -> Attr {
        let mut a = self.attr;
        match &self.body {
            Body::File(d) => {
                a.size = d.size();
                a.blocks = d.blocks();
            }
            // As tmpfs: 20 bytes per entry, 40 for `.` and `..`.
            Body::Dir(d) => a.size = 40 + 20 * d.entries.len() as u64,
            Body::Symlink(t) => a.size = t.len() as u64,
            Body::Special => {}
        }
        a
    }

    /// What this inode costs against the capacity.
    fn charge(&self) -> u64 {
        let xattrs: usize = self.xattrs.iter().map(|(k, v)| k.len() + v.len()).sum();
        let body = match &self.body {
            Body::File(d) => d.charge(),
            Body::Symlink(t) => t.len() as u64,
            Body::Dir(_) | Body::Special => 0,
        };
        INODE_COST + xattrs as u64 + body
    }

    fn is_dir(&self) -> bool {
        matches!(self.body, Body::Dir(_))
    }

    fn kind(&self) -> FileType {
        self.attr.kind().unwrap_or(FileType::RegularFile)
    }

    fn file(&self) -> Result<&FileData, Errno> {
        match &self.body {
            Body::File(d) => Ok(d),
            Body::Dir(_) => Err(Errno::EISDIR),
            _ => Err(Errno::EINVAL),
        }
    }

    fn file_mut(&mut self) -> Result<&mut FileData, Errno> {
        match &mut self.body {
            Body::File(d) => Ok(d),
            Body::Dir(_) => Err(Errno::EISDIR),
            _ => Err(Errno::EINVAL),
        }
    }

    fn dir(&self) -> Result<&Dir, Errno> {
        match &self.body {
            Body::Dir(d) => Ok(d),
            _ => Err(Errno::ENOTDIR),
        }
    }

    fn dir_mut(&mut self) -> Result<&mut Dir, Errno> {
        match &mut self.body {
            Body::Dir(d) => Ok(d),
            _ => Err(Errno::ENOTDIR),
        }
    }

    fn touch_content(&mut self, now: Timestamp) {
        self.attr.mtime = now;
        self.attr.ctime = now;
    }

    /// Drops set-user-id, and set-group-id if group-executable (as `file_remove_privs`).
    fn kill_suidgid(&mut self) {
        let mut kill = S_ISUID;
        if self.attr.mode & S_IXGRP != 0 {
            kill |= S_ISGID;
        }
        self.attr.mode &= !kill;
    }
}

#[derive(Clone, Copy, Debug)]
struct Handle {
    node: u64,
    /// Directories: the cookie at which a listing through this handle reached the end.
    eod: Option<u64>,
    /// Directories: the directory's next cookie when the current scan began (its READDIR
    /// at offset 0); 0 before the first. Entries at or past it came after the scan began.
    limit: u64,
}

/// Whether growing a charge from `before` to `after` still fits.
fn fits(used: u64, capacity: u64, before: u64, after: u64) -> Result<(), Errno> {
    let grow = after.saturating_sub(before);
    if used.saturating_add(grow) > capacity {
        Err(Errno::ENOSPC)
    } else {
        Ok(())
    }
}

fn check_name(name: &[u8]) -> Result<(), Errno> {
    if name.len() > NAME_MAX {
        Err(Errno::ENAMETOOLONG)
    } else {
        Ok(())
    }
}

/// `system.posix_acl_access` and `system.posix_acl_default`.
fn is_posix_acl(name: &[u8]) -> bool {
    name == b"system.posix_acl_access" || name == b"system.posix_acl_default"
}

fn end_of(offset: u64, len: u64) -> Result<u64, Errno> {
    match offset.checked_add(len) {
        Some(end) if end <= MAX_FILE_SIZE => Ok(end),
        _ => Err(Errno::EFBIG),
    }
}

/// The whole filesystem.
#[derive(Debug)]
pub(crate) struct Tree {
    nodes: HashMap<u64, Inode>,
    handles: HashMap<u64, Handle>,
    next_node: u64,
    next_handle: u64,
    capacity: u64,
    used: u64,
}

impl Tree {
    /// An empty filesystem of `capacity` bytes whose root (mode 0755) belongs to `owner`.
    pub(crate) fn new(capacity: u64, owner: Caller) -> Self {
        let now = Timestamp::now();
        let mut attr = Attr::new(ROOT, FileType::Directory, 0o755, now);
        attr.nlink = 2;
        attr.uid = owner.uid;
        attr.gid = owner.gid;
        attr.blksize = PAGE as u32;
        let root = Inode {
            attr,
            lookups: 0,
            opens: 0,
            xattrs: BTreeMap::new(),
            body: Body::Dir(Dir::new(ROOT)),
        };
        let used = root.charge();
        let mut nodes = HashMap::new();
        nodes.insert(ROOT, root);
        Self {
            nodes,
            handles: HashMap::new(),
            next_node: ROOT + 1,
            next_handle: 1,
            capacity,
            used,
        }
    }

    // ---- internals ----

    fn node(&self, id: u64) -> Result<&Inode, Errno> {
        self.nodes.get(&id).ok_or(Errno::ENOENT)
    }

    fn node_mut(&mut self, id: u64) -> Result<&mut Inode, Errno> {
        self.nodes.get_mut(&id).ok_or(Errno::ENOENT)
    }

    /// A directory that still has a name (new entries may go in).
    fn live_dir(&self, id: u64) -> Result<&Dir, Errno> {
        let ino = self.node(id)?;
        let dir = ino.dir()?;
        if ino.attr.nlink == 0 {
            Err(Errno::ENOENT)
        } else {
            Ok(dir)
        }
    }

    fn dir_mut(&mut self, id: u64) -> Result<&mut Dir, Errno> {
        self.node_mut(id)?.dir_mut()
    }

    fn child(&self, parent: u64, name: &[u8]) -> Result<u64, Errno> {
        check_name(name)?;
        self.node(parent)?.dir()?.get(name).ok_or(Errno::ENOENT)
    }

    /// Checks that `name` can be created in `parent` and that `cost` more bytes fit.
    fn can_create(&self, parent: u64, name: &[u8], cost: u64) -> Result<(), Errno> {
        check_name(name)?;
        if self.live_dir(parent)?.get(name).is_some() {
            return Err(Errno::EEXIST);
        }
        fits(self.used, self.capacity, 0, cost)
    }

    /// Makes a node (not yet in any directory, no lookups).
    fn new_node(
        &mut self,
        parent: u64,
        kind: FileType,
        mode: u32,
        caller: Caller,
        body: Body,
    ) -> u64 {
        let now = Timestamp::now();
        let id = self.next_node;
        self.next_node += 1;
        let mut attr = Attr::new(id, kind, mode & 0o7777, now);
        attr.uid = caller.uid;
        attr.gid = caller.gid;
        attr.blksize = PAGE as u32;
        attr.nlink = 0;
        // A set-group-id directory passes its group on, and its bit to subdirectories.
        if let Ok(p) = self.node(parent) {
            if p.attr.mode & S_ISGID != 0 {
                attr.gid = p.attr.gid;
                if kind == FileType::Directory {
                    attr.mode |= S_ISGID;
                }
            }
        }
        let ino = Inode {
            attr,
            lookups: 0,
            opens: 0,
            xattrs: BTreeMap::new(),
            body,
        };
        self.used += ino.charge();
        self.nodes.insert(id, ino);
        id
    }

    /// Puts `node` into `parent` as `name` (checked by the caller) and counts the link.
    fn add_entry(&mut self, parent: u64, name: &[u8], node: u64, now: Timestamp) {
        let is_dir = self.nodes.get(&node).is_some_and(Inode::is_dir);
        if let Some(ino) = self.nodes.get_mut(&node) {
            ino.attr.nlink += if is_dir { 2 } else { 1 };
            ino.attr.ctime = now;
            if let Body::Dir(d) = &mut ino.body {
                d.parent = parent;
            }
        }
        if let Some(p) = self.nodes.get_mut(&parent) {
            if let Body::Dir(d) = &mut p.body {
                d.insert(name, node);
            }
            if is_dir {
                p.attr.nlink += 1;
            }
            p.touch_content(now);
        }
    }

    /// Takes `name` out of `parent` and uncounts the link; frees the node if it was the
    /// last reference. Returns the node.
    fn remove_entry(&mut self, parent: u64, name: &[u8], now: Timestamp) -> Option<u64> {
        let p = self.nodes.get_mut(&parent)?;
        let node = p.dir_mut().ok()?.remove(name)?;
        p.touch_content(now);
        let is_dir = self.nodes.get(&node).is_some_and(Inode::is_dir);
        if is_dir {
            if let Some(p) = self.nodes.get_mut(&parent) {
                p.attr.nlink -= 1;
            }
        }
        if let Some(ino) = self.nodes.get_mut(&node) {
            ino.attr.nlink = if is_dir {
                0
            } else {
                ino.attr.nlink.saturating_sub(1)
            };
            ino.attr.ctime = now;
        }
        Some(node)
    }

    /// Frees `id` once nothing refers to it: no name, no kernel lookup, no open handle.
    fn maybe_free(&mut self, id: u64) {
        if id == ROOT {
            return;
        }
        if let Some(ino) = self.nodes.get(&id) {
            if ino.attr.nlink == 0 && ino.lookups == 0 && ino.opens == 0 {
                self.used -= ino.charge();
                self.nodes.remove(&id);
            }
        }
    }

    /// Answers an entry: one more lookup held by the kernel.
    fn entry(&mut self, id: u64) -> Result<(u64, Attr), Errno> {
        let ino = self.node_mut(id)?;
        ino.lookups += 1;
        Ok((id, ino.attr()))
    }

    fn new_handle(&mut self, node: u64) -> u64 {
        let fh = self.next_handle;
        self.next_handle += 1;
        self.handles.insert(
            fh,
            Handle {
                node,
                eod: None,
                limit: 0,
            },
        );
        if let Some(ino) = self.nodes.get_mut(&node) {
            ino.opens += 1;
        }
        fh
    }

    /// Whether `ancestor` is `node` or one of the directories above it.
    fn is_ancestor(&self, ancestor: u64, node: u64) -> bool {
        let mut cur = node;
        for _ in 0..=self.nodes.len() {
            if cur == ancestor {
                return true;
            }
            match self.nodes.get(&cur).map(|i| &i.body) {
                Some(Body::Dir(d)) if cur != ROOT => cur = d.parent,
                _ => return false,
            }
        }
        false
    }

    /// Changes a file's charge around `f`, failing with ENOSPC (and changing nothing) if
    /// `predicted` bytes do not fit.
    fn resize_file<R>(
        &mut self,
        id: u64,
        predicted: impl FnOnce(&FileData) -> u64,
        f: impl FnOnce(&mut FileData) -> R,
    ) -> Result<R, Errno> {
        let (used, capacity) = (self.used, self.capacity);
        let ino = self.nodes.get_mut(&id).ok_or(Errno::ENOENT)?;
        let before = ino.charge();
        let data = ino.file_mut()?;
        let old = data.charge();
        fits(used, capacity, old, predicted(data))?;
        let r = f(data);
        let after = ino.charge();
        self.used = self.used - before + after;
        Ok(r)
    }

    // ---- operations ----

    /// Bytes in use against the capacity.
    #[cfg(test)]
    pub(crate) fn used(&self) -> u64 {
        self.used
    }

    /// Whether node `id` exists.
    #[cfg(test)]
    pub(crate) fn exists(&self, id: u64) -> bool {
        self.nodes.contains_key(&id)
    }

    /// Lookups the kernel holds on `id`.
    #[cfg(test)]
    pub(crate) fn lookups(&self, id: u64) -> u64 {
        self.nodes.get(&id).map_or(0, |i| i.lookups)
    }

    /// LOOKUP. "." and ".." come only from the kernel's export operations (a file handle
    /// whose inode it forgot), by node id: "." names the node itself, whatever it is, and
    /// ".." a directory's parent; a deleted node is not found (its handles are stale).
    pub(crate) fn lookup(&mut self, parent: u64, name: &[u8]) -> Result<(u64, Attr), Errno> {
        let id = match name {
            b"." | b".." => {
                let ino = self.node(parent)?;
                if ino.attr.nlink == 0 {
                    return Err(Errno::ENOENT);
                }
                match (&ino.body, name) {
                    (_, b".") => parent,
                    (Body::Dir(d), _) => d.parent,
                    _ => return Err(Errno::ENOTDIR),
                }
            }
            _ => self.child(parent, name)?,
        };
        self.entry(id)
    }

    /// FORGET: the kernel gives back `n` lookups.
    pub(crate) fn forget(&mut self, id: u64, n: u64) {
        if let Some(ino) = self.nodes.get_mut(&id) {
            ino.lookups = ino.lookups.saturating_sub(n);
            self.maybe_free(id);
        }
    }

    /// GETATTR.
    pub(crate) fn getattr(&self, id: u64) -> Result<Attr, Errno> {
        Ok(self.node(id)?.attr())
    }

    /// SETATTR. The size is changed first: if it fails (ENOSPC, EISDIR...) nothing
    /// changes.
    pub(crate) fn setattr(&mut self, id: u64, set: &SetAttr) -> Result<Attr, Errno> {
        let now = Timestamp::now();
        let resolve = |t: TimeOrNow| match t {
            TimeOrNow::At(t) => t,
            TimeOrNow::Now => now,
        };
        self.node(id)?;
        if let Some(size) = set.size {
            if size > MAX_FILE_SIZE {
                return Err(Errno::EFBIG);
            }
            self.resize_file(id, |d| d.charge_if_resized(size), |d| d.set_size(size))?;
            // Even at the same size: `truncate`/`ftruncate` update mtime (the VFS passes
            // ATTR_MTIME, which FUSE leaves to the server for a truncate), as on tmpfs.
            self.node_mut(id)?.attr.mtime = now;
        }
        let ino = self.node_mut(id)?;
        if let Some(mode) = set.mode {
            ino.attr.mode = (ino.attr.mode & S_IFMT) | (mode & 0o7777);
        }
        if let Some(uid) = set.uid {
            ino.attr.uid = uid;
        }
        if let Some(gid) = set.gid {
            ino.attr.gid = gid;
        }
        if set.kill_suidgid {
            ino.kill_suidgid();
        }
        if let Some(t) = set.atime {
            ino.attr.atime = resolve(t);
        }
        if let Some(t) = set.mtime {
            ino.attr.mtime = resolve(t);
        }
        ino.attr.ctime = set.ctime.unwrap_or(now);
        Ok(ino.attr())
    }

    /// READLINK.
    pub(crate) fn readlink(&self, id: u64) -> Result<&[u8], Errno> {
        match &self.node(id)?.body {
            Body::Symlink(t) => Ok(t),
            _ => Err(Errno::EINVAL),
        }
    }

    /// MKNOD: a regular file, fifo, socket or device (`mode` holds the type).
    pub(crate) fn mknod(
        &mut self,
        parent: u64,
        name: &[u8],
        mode: u32,
        rdev: u32,
        caller: Caller,
    ) -> Result<(u64, Attr), Errno> {
        let kind = if mode & S_IFMT == 0 {
            FileType::RegularFile
        } else {
            FileType::from_mode(mode).ok_or(Errno::EINVAL)?
        };
        let body = match kind {
            FileType::RegularFile => Body::File(FileData::default()),
            FileType::Directory => return Err(Errno::EPERM),
            FileType::Symlink => return Err(Errno::EINVAL),
            FileType::NamedPipe
            | FileType::Socket
            | FileType::CharDevice
            | FileType::BlockDevice => Body::Special,
        };
        self.can_create(parent, name, INODE_COST)?;
        let id = self.new_node(parent, kind, mode, caller, body);
        if matches!(kind, FileType::CharDevice | FileType::BlockDevice) {
            self.node_mut(id)?.attr.rdev = rdev;
        }
        self.add_entry(parent, name, id, Timestamp::now());
        self.entry(id)
    }

    /// MKDIR.
    pub(crate) fn mkdir(
        &mut self,
        parent: u64,
        name: &[u8],
        mode: u32,
        caller: Caller,
    ) -> Result<(u64, Attr), Errno> {
        self.can_create(parent, name, INODE_COST)?;
        let id = self.new_node(
            parent,
            FileType::Directory,
            mode,
            caller,
            Body::Dir(Dir::new(parent)),
        );
        self.add_entry(parent, name, id, Timestamp::now());
        self.entry(id)
    }

    /// SYMLINK.
    pub(crate) fn symlink(
        &mut self,
        parent: u64,
        name: &[u8],
        target: &[u8],
        caller: Caller,
    ) -> Result<(u64, Attr), Errno> {
        self.can_create(parent, name, INODE_COST + target.len() as u64)?;
        let id = self.new_node(
            parent,
            FileType::Symlink,
            0o777,
            caller,
            Body::Symlink(target.into()),
        );
        self.add_entry(parent, name, id, Timestamp::now());
        self.entry(id)
    }

    /// LINK: a new name for `id` (not a directory).
    pub(crate) fn link(&mut self, id: u64, parent: u64, name: &[u8]) -> Result<(u64, Attr), Errno> {
        if self.node(id)?.is_dir() {
            return Err(Errno::EPERM);
        }
        self.can_create(parent, name, 0)?;
        self.add_entry(parent, name, id, Timestamp::now());
        self.entry(id)
    }

    /// UNLINK (not a directory: EISDIR).
    pub(crate) fn unlink(&mut self, parent: u64, name: &[u8]) -> Result<(), Errno> {
        let id = self.child(parent, name)?;
        if self.node(id)?.is_dir() {
            return Err(Errno::EISDIR);
        }
        self.remove_entry(parent, name, Timestamp::now());
        self.maybe_free(id);
        Ok(())
    }

    /// RMDIR (an empty directory only).
    pub(crate) fn rmdir(&mut self, parent: u64, name: &[u8]) -> Result<(), Errno> {
        let id = self.child(parent, name)?;
        if !self.node(id)?.dir()?.is_empty() {
            return Err(Errno::ENOTEMPTY);
        }
        self.remove_entry(parent, name, Timestamp::now());
        self.maybe_free(id);
        Ok(())
    }

    /// RENAME and RENAME2 (`flags`: 0, `RENAME_NOREPLACE` or `RENAME_EXCHANGE`), with the
    /// checks `rename(2)` documents, in the order the VFS makes them.
    pub(crate) fn rename(
        &mut self,
        parent: u64,
        name: &[u8],
        newparent: u64,
        newname: &[u8],
        flags: u32,
    ) -> Result<(), Errno> {
        let exchange = match flags {
            0 | RENAME_NOREPLACE => false,
            RENAME_EXCHANGE => true,
            _ => return Err(Errno::EINVAL),
        };
        check_name(newname)?;
        let src = self.child(parent, name)?;
        let dst = self.live_dir(newparent)?.get(newname);
        let src_dir = self.node(src)?.is_dir();
        let now = Timestamp::now();
        if exchange {
            let dst = dst.ok_or(Errno::ENOENT)?;
            if src == dst {
                return Ok(());
            }
            let dst_dir = self.node(dst)?.is_dir();
            if (src_dir && self.is_ancestor(src, newparent))
                || (dst_dir && self.is_ancestor(dst, parent))
            {
                return Err(Errno::EINVAL);
            }
            self.dir_mut(parent)?.repoint(name, dst);
            self.dir_mut(newparent)?.repoint(newname, src);
            for (id, dir, from, to) in [
                (src, src_dir, parent, newparent),
                (dst, dst_dir, newparent, parent),
            ] {
                let ino = self.node_mut(id)?;
                ino.attr.ctime = now;
                if dir && from != to {
                    ino.dir_mut()?.parent = to;
                    self.node_mut(from)?.attr.nlink -= 1;
                    self.node_mut(to)?.attr.nlink += 1;
                }
            }
            self.node_mut(parent)?.touch_content(now);
            self.node_mut(newparent)?.touch_content(now);
            return Ok(());
        }
        if dst.is_some() && flags == RENAME_NOREPLACE {
            return Err(Errno::EEXIST);
        }
        if src_dir && self.is_ancestor(src, newparent) {
            return Err(Errno::EINVAL);
        }
        if let Some(dst) = dst {
            if dst == src {
                // Two names of one file (or the same name): rename(2) does nothing.
                return Ok(());
            }
            let target = self.node(dst)?;
            match (src_dir, target.is_dir()) {
                (true, false) => return Err(Errno::ENOTDIR),
                (false, true) => return Err(Errno::EISDIR),
                (true, true) if !target.dir()?.is_empty() => return Err(Errno::ENOTEMPTY),
                _ => {}
            }
            self.remove_entry(newparent, newname, now);
        }
        // Move the entry: the old name goes, the new one gets a fresh cookie. `add_entry`
        // counts the link again (2 for a directory, and 1 in its new parent).
        self.dir_mut(parent)?.remove(name);
        let p = self.node_mut(parent)?;
        p.touch_content(now);
        if src_dir {
            p.attr.nlink -= 1;
        }
        self.node_mut(src)?.attr.nlink -= if src_dir { 2 } else { 1 };
        self.add_entry(newparent, newname, src, now);
        if let Some(dst) = dst {
            self.maybe_free(dst);
        }
        Ok(())
    }

    /// OPEN: a handle on a file. With `ATOMIC_O_TRUNC` negotiated the kernel passes
    /// `O_TRUNC` here instead of sending a SETATTR first, so it is honoured.
    pub(crate) fn open(&mut self, id: u64, flags: ringfuse::OpenFlags) -> Result<u64, Errno> {
        let ino = self.node(id)?;
        if ino.is_dir() {
            return Err(Errno::EISDIR);
        }
        // An empty file too: `open(O_TRUNC)` updates mtime and ctime whatever the size
        // was (POSIX; tmpfs does).
        if flags.contains(ringfuse::OpenFlags::TRUNC) && ino.file().is_ok() {
            self.resize_file(id, |_| 0, |d| d.set_size(0))?;
            self.node_mut(id)?.touch_content(Timestamp::now());
        }
        Ok(self.new_handle(id))
    }

    /// OPENDIR.
    pub(crate) fn opendir(&mut self, id: u64) -> Result<u64, Errno> {
        self.node(id)?.dir()?;
        Ok(self.new_handle(id))
    }

    /// RELEASE and RELEASEDIR: the handle goes; the node too if nothing else holds it.
    pub(crate) fn release(&mut self, fh: u64) {
        if let Some(h) = self.handles.remove(&fh) {
            if let Some(ino) = self.nodes.get_mut(&h.node) {
                ino.opens = ino.opens.saturating_sub(1);
            }
            self.maybe_free(h.node);
        }
    }

    /// CREATE: make and open a regular file. An existing name is opened instead (unless
    /// `O_EXCL`), as `open(2)` with `O_CREAT` does.
    pub(crate) fn create(
        &mut self,
        parent: u64,
        name: &[u8],
        mode: u32,
        flags: ringfuse::OpenFlags,
        caller: Caller,
    ) -> Result<(u64, Attr, u64), Errno> {
        check_name(name)?;
        if let Some(id) = self.live_dir(parent)?.get(name) {
            if flags.contains(ringfuse::OpenFlags::EXCL) {
                return Err(Errno::EEXIST);
            }
            let fh = self.open(id, flags)?;
            let (id, attr) = self.entry(id)?;
            return Ok((id, attr, fh));
        }
        let (id, attr) = self.mknod(
            parent,
            name,
            (mode & 0o7777) | FileType::RegularFile.mode_bits(),
            0,
            caller,
        )?;
        Ok((id, attr, self.new_handle(id)))
    }

    /// TMPFILE: an open regular file with no name (`nlink` 0) in `parent`'s filesystem.
    pub(crate) fn tmpfile(
        &mut self,
        parent: u64,
        mode: u32,
        caller: Caller,
    ) -> Result<(u64, Attr, u64), Errno> {
        self.live_dir(parent)?;
        fits(self.used, self.capacity, 0, INODE_COST)?;
        let id = self.new_node(
            parent,
            FileType::RegularFile,
            mode,
            caller,
            Body::File(FileData::default()),
        );
        let fh = self.new_handle(id);
        let (id, attr) = self.entry(id)?;
        Ok((id, attr, fh))
    }

    /// READ into `buf`; returns the number of bytes (short at the end of the file). Does
    /// not change atime (as `noatime`).
    pub(crate) fn read(&self, id: u64, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        Ok(self.node(id)?.file()?.read(offset, buf))
    }

    /// WRITE: all of `data` or nothing (ENOSPC, EFBIG). `kill_priv` drops suid/sgid.
    pub(crate) fn write(
        &mut self,
        id: u64,
        offset: u64,
        data: &[u8],
        kill_priv: bool,
    ) -> Result<usize, Errno> {
        let end = end_of(offset, data.len() as u64)?;
        self.resize_file(
            id,
            |d| d.charge_if_written(offset, end),
            |d| d.write(offset, data),
        )?;
        let ino = self.node_mut(id)?;
        ino.touch_content(Timestamp::now());
        if kill_priv {
            ino.kill_suidgid();
        }
        Ok(data.len())
    }

    /// FALLOCATE: mode 0 allocates and extends, `KEEP_SIZE` allocates only,
    /// `PUNCH_HOLE | KEEP_SIZE` zeroes and frees; anything else is EOPNOTSUPP.
    pub(crate) fn fallocate(
        &mut self,
        id: u64,
        offset: u64,
        len: u64,
        mode: u32,
    ) -> Result<(), Errno> {
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        let end = end_of(offset, len)?;
        self.node(id)?.file()?;
        let changed = match mode {
            0 => self.resize_file(
                id,
                |d| d.charge_if_written(offset, end),
                |d| {
                    let old = d.size();
                    d.allocate(offset, end, false);
                    d.size() != old
                },
            )?,
            FALLOC_FL_KEEP_SIZE => {
                self.resize_file(
                    id,
                    |d| d.charge_if_written(offset, end),
                    |d| d.allocate(offset, end, true),
                )?;
                false
            }
            m if m == FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE => {
                self.resize_file(id, FileData::charge, |d| d.punch_hole(offset, end))?;
                true
            }
            _ => return Err(Errno::EOPNOTSUPP),
        };
        if changed {
            self.node_mut(id)?.touch_content(Timestamp::now());
        }
        Ok(())
    }

    /// LSEEK with `SEEK_DATA` or `SEEK_HOLE` (the kernel does the others).
    pub(crate) fn lseek(&self, id: u64, offset: u64, whence: u32) -> Result<u64, Errno> {
        let data = self.node(id)?.file()?;
        match whence {
            SEEK_DATA => data.seek_data(offset).ok_or(Errno::ENXIO),
            SEEK_HOLE => data.seek_hole(offset).ok_or(Errno::ENXIO),
            _ => Err(Errno::EINVAL),
        }
    }

    /// `COPY_FILE_RANGE`: copies up to `len` bytes (fewer at the source's end); all or
    /// nothing against the capacity.
    pub(crate) fn copy_file_range(
        &mut self,
        src: u64,
        off_in: u64,
        dst: u64,
        off_out: u64,
        len: u64,
        flags: u64,
    ) -> Result<u64, Errno> {
        if flags != 0 {
            return Err(Errno::EINVAL);
        }
        let size_in = self.node(src)?.file()?.size();
        self.node(dst)?.file()?;
        let n = len.min(size_in.saturating_sub(off_in));
        if n == 0 {
            return Ok(0);
        }
        let end_out = end_of(off_out, n)?;
        if src == dst && off_in < end_out && off_out < off_in + n {
            return Err(Errno::EINVAL);
        }
        self.resize_file(dst, |d| d.charge_if_written(off_out, end_out), |_| ())?;
        let mut buf = vec![0; n.min(1 << 20) as usize];
        let mut done = 0;
        while done < n {
            let chunk = (n - done).min(buf.len() as u64) as usize;
            let got = self
                .node(src)?
                .file()?
                .read(off_in + done, &mut buf[..chunk]);
            if got == 0 {
                break;
            }
            let at = off_out + done;
            self.resize_file(
                dst,
                |d| d.charge_if_written(at, at + got as u64),
                |d| d.write(at, &buf[..got]),
            )?;
            done += got as u64;
        }
        self.node_mut(dst)?.touch_content(Timestamp::now());
        Ok(done)
    }

    /// Checks that `id` is a directory (before a READDIR reply is started).
    pub(crate) fn check_dir(&self, id: u64) -> Result<(), Errno> {
        self.node(id)?.dir().map(|_| ())
    }

    /// READDIR: entries after the cookie `offset`, in cookie order, to `f(ino, cookie,
    /// kind, name)` until it returns `false` (the reply is full). Generated from the
    /// current state each time: removed entries are gone, survivors keep their cookies.
    pub(crate) fn readdir(
        &self,
        id: u64,
        offset: u64,
        mut f: impl FnMut(u64, u64, FileType, &[u8]) -> bool,
    ) -> Result<(), Errno> {
        let dir = self.node(id)?.dir()?;
        if offset < COOKIE_DOT && !f(id, COOKIE_DOT, FileType::Directory, b".") {
            return Ok(());
        }
        if offset < COOKIE_DOTDOT && !f(dir.parent, COOKIE_DOTDOT, FileType::Directory, b"..") {
            return Ok(());
        }
        for (&cookie, (name, node)) in dir.entries.range(offset.max(COOKIE_DOTDOT) + 1..) {
            let kind = self
                .nodes
                .get(node)
                .map_or(FileType::RegularFile, Inode::kind);
            if !f(*node, cookie, kind, name) {
                break;
            }
        }
        Ok(())
    }

    /// READDIR through the open directory `fh`: as [`readdir`](Self::readdir), except that
    /// once a listing through this handle has reached the end, continuing from there
    /// answers the end again. Entries created after that are not returned in this pass,
    /// as on tmpfs (whose directory offsets keep an end mark since Linux 6.6): a name
    /// removed and re-created by another process while a scan finishes (it gets a new,
    /// higher cookie) is not listed twice in one scan.
    pub(crate) fn readdir_handle(
        &mut self,
        fh: u64,
        id: u64,
        offset: u64,
        mut f: impl FnMut(u64, u64, FileType, &[u8]) -> bool,
    ) -> Result<(), Errno> {
        if self.at_end(fh, offset) {
            return self.check_dir(id);
        }
        let limit = self.scan_limit(fh, id, offset);
        let (mut last, mut full) = (offset, false);
        self.readdir(id, offset, |ino, cookie, kind, name| {
            if cookie >= limit {
                return false;
            }
            let added = f(ino, cookie, kind, name);
            if added {
                last = cookie;
            } else {
                full = true;
            }
            added
        })?;
        self.mark_end(fh, full, last);
        Ok(())
    }

    /// READDIRPLUS through the open directory `fh`, with the end mark of
    /// [`readdir_handle`](Self::readdir_handle).
    pub(crate) fn readdirplus_handle(
        &mut self,
        fh: u64,
        id: u64,
        offset: u64,
        mut f: impl FnMut(u64, &Attr, u64, &[u8]) -> bool,
    ) -> Result<(), Errno> {
        if self.at_end(fh, offset) {
            return self.check_dir(id);
        }
        let limit = self.scan_limit(fh, id, offset);
        let (mut last, mut full) = (offset, false);
        self.readdirplus(id, offset, |child, attr, cookie, name| {
            if cookie >= limit {
                return false;
            }
            let added = f(child, attr, cookie, name);
            if added {
                last = cookie;
            } else {
                full = true;
            }
            added
        })?;
        self.mark_end(fh, full, last);
        Ok(())
    }

    /// The cookie bound of the scan through `fh` that READDIR at `offset` continues: entries
    /// at or past it were added after the scan began (created, or renamed: a rename gives
    /// the new name a fresh cookie) and are left to the next scan, as on tmpfs, whose
    /// directories record their next offset when a scan starts (Linux 6.13+). Without it a
    /// scan racing renames in the same directory never ends (xfstests generic/736). A scan
    /// starts at offset 0 (open or rewind).
    fn scan_limit(&mut self, fh: u64, id: u64, offset: u64) -> u64 {
        let next = self
            .node(id)
            .and_then(Inode::dir)
            .map_or(u64::MAX, |d| d.next_cookie);
        match self.handles.get_mut(&fh) {
            Some(h) => {
                if offset == 0 || h.limit == 0 {
                    h.limit = next;
                }
                h.limit
            }
            None => next,
        }
    }

    fn at_end(&self, fh: u64, offset: u64) -> bool {
        self.handles
            .get(&fh)
            .and_then(|h| h.eod)
            .is_some_and(|end| offset >= end)
    }

    fn mark_end(&mut self, fh: u64, full: bool, last: u64) {
        if let Some(h) = self.handles.get_mut(&fh) {
            // A reply cut short by the buffer is not the end; a rewind starts a new pass.
            h.eod = if full { None } else { Some(last) };
        }
    }

    /// READDIRPLUS: as [`readdir`](Self::readdir), with each entry's node (0 for `.` and
    /// `..`, which the kernel does not instantiate) and attributes. `f` returns whether the
    /// entry went into the reply; each one that did counts as a lookup.
    pub(crate) fn readdirplus(
        &mut self,
        id: u64,
        offset: u64,
        mut f: impl FnMut(u64, &Attr, u64, &[u8]) -> bool,
    ) -> Result<(), Errno> {
        let ino = self.node(id)?;
        let parent = ino.dir()?.parent;
        let mut attr = ino.attr();
        if offset < COOKIE_DOT && !f(0, &attr, COOKIE_DOT, b".") {
            return Ok(());
        }
        attr.ino = parent;
        if offset < COOKIE_DOTDOT && !f(0, &attr, COOKIE_DOTDOT, b"..") {
            return Ok(());
        }
        let mut pos = offset.max(COOKIE_DOTDOT);
        loop {
            let dir = self.node(id)?.dir()?;
            let Some((&cookie, (name, node))) = dir.entries.range(pos + 1..).next() else {
                break;
            };
            let child = *node;
            let Some(c) = self.nodes.get(&child) else {
                break;
            };
            if !f(child, &c.attr(), cookie, name) {
                break;
            }
            self.node_mut(child)?.lookups += 1;
            pos = cookie;
        }
        Ok(())
    }

    /// STATFS: blocks of 4 KiB and inodes of [`INODE_COST`] bytes out of the capacity.
    pub(crate) fn statfs(&self) -> Statfs {
        let free = self.capacity.saturating_sub(self.used);
        Statfs {
            blocks: self.capacity / PAGE,
            bfree: free / PAGE,
            bavail: free / PAGE,
            files: self.capacity / INODE_COST,
            ffree: free / INODE_COST,
            bsize: PAGE as u32,
            namelen: NAME_MAX as u32,
            frsize: PAGE as u32,
        }
    }

    /// SETXATTR with `XATTR_CREATE` (EEXIST if present) or `XATTR_REPLACE` (ENODATA if
    /// absent).
    pub(crate) fn setxattr(
        &mut self,
        id: u64,
        name: &[u8],
        value: &[u8],
        flags: u32,
    ) -> Result<(), Errno> {
        if name.is_empty() || name.len() > XATTR_NAME_MAX {
            return Err(Errno::ERANGE);
        }
        if value.len() > XATTR_SIZE_MAX {
            return Err(Errno::E2BIG);
        }
        // POSIX ACLs are not implemented (no `POSIX_ACL` in INIT). Stored as plain data they
        // would be ignored, and tools that set a mode through an ACL (`cp -a`, `setfacl`)
        // would silently keep the old mode; refused, those tools fall back to chmod.
        if is_posix_acl(name) {
            return Err(Errno::EOPNOTSUPP);
        }
        if flags & !(XATTR_CREATE | XATTR_REPLACE) != 0 || flags == XATTR_CREATE | XATTR_REPLACE {
            return Err(Errno::EINVAL);
        }
        let (used, capacity) = (self.used, self.capacity);
        let ino = self.node_mut(id)?;
        let old = ino.xattrs.get(name).map(|v| name.len() + v.len());
        match (old, flags) {
            (Some(_), XATTR_CREATE) => return Err(Errno::EEXIST),
            (None, XATTR_REPLACE) => return Err(Errno::ENODATA),
            _ => {}
        }
        let before = ino.charge();
        fits(
            used,
            capacity,
            old.unwrap_or(0) as u64,
            (name.len() + value.len()) as u64,
        )?;
        ino.xattrs.insert(name.into(), value.into());
        ino.attr.ctime = Timestamp::now();
        let after = ino.charge();
        self.used = self.used - before + after;
        Ok(())
    }

    /// GETXATTR.
    pub(crate) fn getxattr(&self, id: u64, name: &[u8]) -> Result<&[u8], Errno> {
        self.node(id)?
            .xattrs
            .get(name)
            .map(AsRef::as_ref)
            .ok_or(Errno::ENODATA)
    }

    /// LISTXATTR: the names, each followed by a NUL.
    pub(crate) fn listxattr(&self, id: u64) -> Result<Vec<u8>, Errno> {
        let mut list = Vec::new();
        for name in self.node(id)?.xattrs.keys() {
            list.extend_from_slice(name);
            list.push(0);
        }
        Ok(list)
    }

    /// REMOVEXATTR.
    pub(crate) fn removexattr(&mut self, id: u64, name: &[u8]) -> Result<(), Errno> {
        let ino = self.node_mut(id)?;
        let before = ino.charge();
        ino.xattrs.remove(name).ok_or(Errno::ENODATA)?;
        ino.attr.ctime = Timestamp::now();
        let after = ino.charge();
        self.used = self.used - before + after;
        Ok(())
    }

    /// ACCESS: the mode bits checked as the kernel's `generic_permission` would, with the
    /// caller's primary group only (FUSE does not pass supplementary groups).
    pub(crate) fn access(&self, id: u64, mask: u32, caller: Caller) -> Result<(), Errno> {
        let attr = self.node(id)?.attr;
        let mask = mask & (R_OK | W_OK | X_OK);
        if caller.uid == 0 {
            // Root may read and write anything, and execute what someone may execute.
            let exec_ok = attr.kind() == Some(FileType::Directory) || attr.mode & 0o111 != 0;
            return if mask & X_OK != 0 && !exec_ok {
                Err(Errno::EACCES)
            } else {
                Ok(())
            };
        }
        let shift = if caller.uid == attr.uid {
            6
        } else if caller.gid == attr.gid {
            3
        } else {
            0
        };
        let bits = (attr.mode >> shift) & 0o7;
        if mask & !bits == 0 {
            Ok(())
        } else {
            Err(Errno::EACCES)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringfuse::OpenFlags;

    const ME: Caller = Caller {
        uid: 1000,
        gid: 1000,
    };

    fn tree() -> Tree {
        Tree::new(1 << 20, Caller { uid: 0, gid: 0 })
    }

    fn file(t: &mut Tree, parent: u64, name: &str) -> u64 {
        t.mknod(parent, name.as_bytes(), 0o100_644, 0, ME)
            .unwrap()
            .0
    }

    fn dir(t: &mut Tree, parent: u64, name: &str) -> u64 {
        t.mkdir(parent, name.as_bytes(), 0o755, ME).unwrap().0
    }

    fn read(t: &Tree, id: u64) -> Vec<u8> {
        let mut buf = vec![0; 1 << 16];
        let n = t.read(id, 0, &mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    fn names(t: &Tree, id: u64) -> Vec<String> {
        let mut v = Vec::new();
        t.readdir(id, 0, |_, _, _, n| {
            v.push(String::from_utf8_lossy(n).into_owned());
            true
        })
        .unwrap();
        v
    }

    #[test]
    fn create_write_read_truncate() {
        let mut t = tree();
        let (id, attr, fh) = t.create(ROOT, b"f", 0o644, OpenFlags(0o1), ME).unwrap();
        assert_eq!(attr.mode, 0o100_644);
        assert_eq!((attr.uid, attr.gid, attr.nlink), (1000, 1000, 1));
        assert_eq!(t.write(id, 0, b"hello", false).unwrap(), 5);
        assert_eq!(t.write(id, 10, b"world", false).unwrap(), 5);
        assert_eq!(read(&t, id), b"hello\0\0\0\0\0world");
        let mut part = [0; 4];
        assert_eq!(t.read(id, 12, &mut part).unwrap(), 3);
        assert_eq!(&part[..3], b"rld");
        let set = SetAttr {
            size: Some(3),
            ..SetAttr::default()
        };
        assert_eq!(t.setattr(id, &set).unwrap().size, 3);
        let set = SetAttr {
            size: Some(6),
            ..SetAttr::default()
        };
        t.setattr(id, &set).unwrap();
        assert_eq!(read(&t, id), b"hel\0\0\0");
        // O_TRUNC on open (ATOMIC_O_TRUNC).
        let fh2 = t.open(id, OpenFlags(0o1001)).unwrap();
        assert_eq!(t.getattr(id).unwrap().size, 0);
        t.release(fh);
        t.release(fh2);
        // Directories answer EISDIR.
        assert_eq!(t.read(ROOT, 0, &mut part), Err(Errno::EISDIR));
        assert_eq!(t.open(ROOT, OpenFlags(0)), Err(Errno::EISDIR));
    }

    #[test]
    fn nlink_and_times() {
        let mut t = tree();
        assert_eq!(t.getattr(ROOT).unwrap().nlink, 2);
        let d = dir(&mut t, ROOT, "d");
        assert_eq!(t.getattr(ROOT).unwrap().nlink, 3);
        assert_eq!(t.getattr(d).unwrap().nlink, 2);
        let f = file(&mut t, d, "f");
        let before = t.getattr(d).unwrap().mtime;
        t.link(f, ROOT, b"g").unwrap();
        assert_eq!(t.getattr(f).unwrap().nlink, 2);
        assert_eq!(t.link(d, ROOT, b"h"), Err(Errno::EPERM));
        t.unlink(d, b"f").unwrap();
        assert_eq!(t.getattr(f).unwrap().nlink, 1);
        assert!(t.getattr(d).unwrap().mtime >= before);
        assert_eq!(t.unlink(ROOT, b"d"), Err(Errno::EISDIR));
        assert_eq!(t.rmdir(ROOT, b"g"), Err(Errno::ENOTDIR));
        t.rmdir(ROOT, b"d").unwrap();
        assert_eq!(t.getattr(ROOT).unwrap().nlink, 2);
        assert_eq!(t.getattr(d).unwrap().nlink, 0, "kept until forgotten");
        t.forget(d, 1);
        assert!(!t.exists(d));
        let long = [b'a'; 256];
        assert_eq!(t.mkdir(ROOT, &long, 0o755, ME), Err(Errno::ENAMETOOLONG));
        assert_eq!(t.lookup(ROOT, &long), Err(Errno::ENAMETOOLONG));
        assert!(t.mkdir(ROOT, &long[..255], 0o755, ME).is_ok());
    }

    #[test]
    fn setgid_directory_passes_group() {
        let mut t = tree();
        let d = t
            .mkdir(ROOT, b"d", 0o2775, Caller { uid: 5, gid: 50 })
            .unwrap()
            .0;
        let sub = t.mkdir(d, b"s", 0o755, ME).unwrap().1;
        assert_eq!((sub.gid, sub.mode & S_ISGID), (50, S_ISGID));
        let f = t.mknod(d, b"f", 0o100_644, 0, ME).unwrap().1;
        assert_eq!((f.gid, f.mode & S_ISGID), (50, 0));
        let dev = t.mknod(ROOT, b"null", 0o020_666, 0x103, ME).unwrap().1;
        assert_eq!((dev.kind(), dev.rdev), (Some(FileType::CharDevice), 0x103));
        assert_eq!(t.mknod(ROOT, b"x", 0o040_755, 0, ME), Err(Errno::EPERM));
    }

    #[test]
    fn setattr_fields() {
        let mut t = tree();
        let f = file(&mut t, ROOT, "f");
        let at = Timestamp::new(100, 5);
        let set = SetAttr {
            mode: Some(0o106_755),
            uid: Some(7),
            gid: Some(8),
            atime: Some(TimeOrNow::At(at)),
            mtime: Some(TimeOrNow::Now),
            ..SetAttr::default()
        };
        let a = t.setattr(f, &set).unwrap();
        assert_eq!((a.mode, a.uid, a.gid, a.atime), (0o106_755, 7, 8, at));
        assert!(a.mtime > at);
        let a = t
            .setattr(
                f,
                &SetAttr {
                    kill_suidgid: true,
                    ..SetAttr::default()
                },
            )
            .unwrap();
        assert_eq!(a.mode, 0o100_755);
        assert_eq!(
            t.setattr(
                ROOT,
                &SetAttr {
                    size: Some(0),
                    ..SetAttr::default()
                }
            ),
            Err(Errno::EISDIR)
        );
    }

    #[test]
    #[allow(clippy::many_single_char_names)]
    fn rename_matrix() {
        let mut t = tree();
        let a = dir(&mut t, ROOT, "a");
        let b = dir(&mut t, a, "b");
        let f = file(&mut t, ROOT, "f");
        let g = file(&mut t, ROOT, "g");
        // NOREPLACE.
        assert_eq!(
            t.rename(ROOT, b"f", ROOT, b"g", RENAME_NOREPLACE),
            Err(Errno::EEXIST)
        );
        // EXCHANGE needs a target.
        assert_eq!(
            t.rename(ROOT, b"f", ROOT, b"nope", RENAME_EXCHANGE),
            Err(Errno::ENOENT)
        );
        t.rename(ROOT, b"f", ROOT, b"g", RENAME_EXCHANGE).unwrap();
        assert_eq!(t.lookup(ROOT, b"f").unwrap().0, g);
        assert_eq!(t.lookup(ROOT, b"g").unwrap().0, f);
        // Exchange a file and a directory across parents keeps nlink right.
        t.rename(ROOT, b"g", a, b"b", RENAME_EXCHANGE).unwrap();
        assert_eq!(t.lookup(ROOT, b"g").unwrap().0, b);
        assert_eq!(t.getattr(ROOT).unwrap().nlink, 4);
        assert_eq!(t.getattr(a).unwrap().nlink, 2);
        t.rename(ROOT, b"g", a, b"b", RENAME_EXCHANGE).unwrap();
        // Into its own subtree.
        assert_eq!(t.rename(ROOT, b"a", a, b"x", 0), Err(Errno::EINVAL));
        assert_eq!(t.rename(ROOT, b"a", b, b"x", 0), Err(Errno::EINVAL));
        assert_eq!(
            t.rename(a, b"b", ROOT, b"a", RENAME_EXCHANGE),
            Err(Errno::EINVAL)
        );
        // Directory over a non-empty directory, over a file; file over a directory.
        let c = dir(&mut t, ROOT, "c");
        assert_eq!(t.rename(ROOT, b"c", ROOT, b"a", 0), Err(Errno::ENOTEMPTY));
        assert_eq!(t.rename(ROOT, b"c", ROOT, b"f", 0), Err(Errno::ENOTDIR));
        assert_eq!(t.rename(ROOT, b"f", ROOT, b"c", 0), Err(Errno::EISDIR));
        // Directory over an empty directory: the target goes, nlink follows.
        let e = dir(&mut t, a, "e");
        assert_eq!(t.getattr(ROOT).unwrap().nlink, 4);
        t.rename(ROOT, b"c", a, b"e", 0).unwrap();
        assert_eq!(t.getattr(ROOT).unwrap().nlink, 3);
        assert_eq!(t.getattr(a).unwrap().nlink, 4);
        assert_eq!(t.getattr(e).unwrap().nlink, 0);
        assert_eq!(t.lookup(a, b"e").unwrap().0, c);
        // `..` of the moved directory is its new parent.
        let mut dotdot = 0;
        t.readdir(c, 0, |ino, _, _, n| {
            if n == b".." {
                dotdot = ino;
            }
            true
        })
        .unwrap();
        assert_eq!(dotdot, a);
        // File over file: the target loses its name; it is freed once forgotten.
        t.rename(ROOT, b"f", ROOT, b"g", 0).unwrap();
        assert_eq!(names(&t, ROOT), [".", "..", "a", "g"]);
        assert_eq!(t.getattr(f).unwrap().nlink, 0);
        t.forget(f, t.lookups(f));
        assert!(!t.exists(f));
        // Same file under two names: nothing happens.
        t.link(g, ROOT, b"h").unwrap();
        t.rename(ROOT, b"g", ROOT, b"h", 0).unwrap();
        assert_eq!(t.getattr(g).unwrap().nlink, 2);
        assert_eq!(t.rename(ROOT, b"g", ROOT, b"h", 8), Err(Errno::EINVAL));
    }

    #[test]
    fn unlinked_open_file_lives_until_release_and_forget() {
        let mut t = tree();
        let (id, _, fh) = t.create(ROOT, b"f", 0o644, OpenFlags(0o2), ME).unwrap();
        t.write(id, 0, b"data", false).unwrap();
        let used = t.used();
        t.unlink(ROOT, b"f").unwrap();
        assert_eq!(t.lookup(ROOT, b"f"), Err(Errno::ENOENT));
        assert_eq!(read(&t, id), b"data");
        t.release(fh);
        assert_eq!(read(&t, id), b"data", "the kernel still holds a lookup");
        assert_eq!(t.used(), used);
        t.forget(id, 1);
        assert!(!t.exists(id));
        assert_eq!(
            t.used(),
            used - INODE_COST - PAGE,
            "its inode and its one page"
        );
        // The other order: forget first, then release.
        let (id, _, fh) = t.create(ROOT, b"f", 0o644, OpenFlags(0o2), ME).unwrap();
        t.unlink(ROOT, b"f").unwrap();
        t.forget(id, 1);
        assert!(t.exists(id));
        t.release(fh);
        assert!(!t.exists(id));
    }

    #[test]
    fn lookup_count_frees_and_ids_are_not_reused() {
        let mut t = tree();
        let f = file(&mut t, ROOT, "f");
        t.lookup(ROOT, b"f").unwrap();
        t.lookup(ROOT, b"f").unwrap();
        assert_eq!(t.lookups(f), 3);
        t.unlink(ROOT, b"f").unwrap();
        t.forget(f, 2);
        assert!(t.exists(f), "one lookup is still held");
        let g = file(&mut t, ROOT, "f");
        assert_ne!(g, f, "an id the kernel holds is never handed out again");
        t.forget(f, 1);
        assert!(!t.exists(f));
        let h = file(&mut t, ROOT, "h");
        assert!(h > g && h > f, "ids only grow");
        // A node with a name survives forget; the root is never freed.
        t.forget(h, 10);
        assert!(t.exists(h));
        t.forget(ROOT, 10);
        assert!(t.exists(ROOT));
        // readdirplus counts a lookup per entry it adds, never for `.` and `..`.
        let mut added = 0;
        t.readdirplus(ROOT, 0, |_, _, _, _| {
            added += 1;
            true
        })
        .unwrap();
        assert_eq!(added, 4);
        assert_eq!((t.lookups(g), t.lookups(h)), (2, 1));
        assert_eq!(t.lookups(ROOT), 0);
        // An entry that did not fit is not counted.
        t.readdirplus(ROOT, 0, |node, _, _, _| node == 0 || node == g)
            .unwrap();
        assert_eq!((t.lookups(g), t.lookups(h)), (3, 1));
    }

    #[test]
    fn removed_directory_lives_while_open_or_looked_up() {
        let mut t = tree();
        let d = dir(&mut t, ROOT, "d");
        let fh = t.opendir(d).unwrap();
        let f = file(&mut t, ROOT, "f");
        assert_eq!(t.opendir(f), Err(Errno::ENOTDIR));
        t.rmdir(ROOT, b"d").unwrap();
        assert_eq!(
            t.mkdir(d, b"x", 0o755, ME),
            Err(Errno::ENOENT),
            "no entries in a removed dir"
        );
        t.forget(d, 1);
        assert!(t.exists(d), "still open");
        let mut listed = Vec::new();
        t.readdir(d, 0, |_, _, _, n| {
            listed.push(n.to_vec());
            true
        })
        .unwrap();
        assert_eq!(listed, [b".".to_vec(), b"..".to_vec()]);
        t.release(fh);
        assert!(!t.exists(d));
    }

    #[test]
    fn parent_times_follow_entries() {
        let mut t = tree();
        let old = Timestamp::new(1, 0);
        let age = SetAttr {
            mtime: Some(TimeOrNow::At(old)),
            ctime: Some(old),
            ..SetAttr::default()
        };
        let mut changes: Vec<Box<dyn FnMut(&mut Tree)>> = vec![
            Box::new(|t| drop(file(t, ROOT, "f"))),
            Box::new(|t| t.rename(ROOT, b"f", ROOT, b"g", 0).unwrap()),
            Box::new(|t| {
                let g = t.lookup(ROOT, b"g").unwrap().0;
                t.link(g, ROOT, b"h").unwrap();
            }),
            Box::new(|t| t.unlink(ROOT, b"h").unwrap()),
            Box::new(|t| drop(t.symlink(ROOT, b"l", b"g", ME).unwrap())),
            Box::new(|t| drop(dir(t, ROOT, "d"))),
            Box::new(|t| t.rmdir(ROOT, b"d").unwrap()),
        ];
        for (i, change) in changes.iter_mut().enumerate() {
            t.setattr(ROOT, &age).unwrap();
            change(&mut t);
            let a = t.getattr(ROOT).unwrap();
            assert!(a.mtime > old && a.ctime > old, "change {i}");
        }
        // A write changes the file's mtime and ctime; a read changes no time.
        let g = t.lookup(ROOT, b"g").unwrap().0;
        t.setattr(g, &age).unwrap();
        let atime = t.getattr(g).unwrap().atime;
        t.read(g, 0, &mut [0; 4]).unwrap();
        assert_eq!(t.getattr(g).unwrap().atime, atime);
        assert_eq!(t.getattr(g).unwrap().mtime, old);
        t.write(g, 0, b"x", false).unwrap();
        let a = t.getattr(g).unwrap();
        assert!(a.mtime > old && a.ctime > old);
    }

    #[test]
    fn a_scan_that_reached_the_end_does_not_list_a_recreated_name_again() {
        let mut t = tree();
        t.mkdir(ROOT, b"d", 0o755, ME).unwrap();
        let fh = t.opendir(ROOT).unwrap();
        let mut seen = Vec::new();
        let mut last = 0;
        t.readdir_handle(fh, ROOT, 0, |_, cookie, _, n| {
            seen.push(n.to_vec());
            last = cookie;
            true
        })
        .unwrap();
        assert!(seen.contains(&b"d".to_vec()));
        // Another process removes and re-creates `d` (new cookie) before the scan's last
        // READDIR: the scan ends, as on tmpfs, instead of listing `d` a second time.
        t.rmdir(ROOT, b"d").unwrap();
        t.mkdir(ROOT, b"d", 0o755, ME).unwrap();
        let mut again = Vec::new();
        t.readdir_handle(fh, ROOT, last, |_, _, _, n| {
            again.push(n.to_vec());
            true
        })
        .unwrap();
        assert_eq!(again, Vec::<Vec<u8>>::new());
        // A new pass (rewind) lists the new `d`.
        let mut rewound = Vec::new();
        t.readdir_handle(fh, ROOT, 0, |_, _, _, n| {
            rewound.push(n.to_vec());
            true
        })
        .unwrap();
        assert!(rewound.contains(&b"d".to_vec()));
    }

    #[test]
    fn a_scan_racing_renames_in_its_directory_ends() {
        // xfstests generic/736: while a scan reads, every entry it lists is renamed away
        // and back (each rename gives a fresh cookie at the end of the directory).
        let mut t = tree();
        let names: Vec<Vec<u8>> = (0..20).map(|k| format!("f{k}").into_bytes()).collect();
        for n in &names {
            t.create(ROOT, n, 0o644, OpenFlags(0o1), ME).unwrap();
        }
        let fh = t.opendir(ROOT).unwrap();
        let (mut offset, mut listed, mut calls) = (0, Vec::new(), 0);
        loop {
            calls += 1;
            assert!(
                calls < 100,
                "the scan does not end: {} entries so far",
                listed.len()
            );
            let mut batch = Vec::new();
            // Three entries per READDIR, as a small buffer would take.
            t.readdir_handle(fh, ROOT, offset, |_, cookie, _, n| {
                if batch.len() == 3 {
                    return false;
                }
                batch.push((cookie, n.to_vec()));
                true
            })
            .unwrap();
            let Some(&(last, _)) = batch.last() else {
                break;
            };
            offset = last;
            for (_, n) in batch {
                if n.starts_with(b"f") {
                    t.rename(ROOT, &n, ROOT, b"tmp", 0).unwrap();
                    t.rename(ROOT, b"tmp", ROOT, &n, 0).unwrap();
                }
                listed.push(n);
            }
        }
        let mut unique = listed.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            listed.len(),
            "a name was listed twice: {listed:?}"
        );
        // A new scan lists every name once.
        let mut all = Vec::new();
        t.readdir_handle(fh, ROOT, 0, |_, _, _, n| {
            all.push(n.to_vec());
            true
        })
        .unwrap();
        assert_eq!(all.len(), names.len() + 2);
    }

    #[test]
    fn readdir_cookies_survive_removals() {
        let mut t = tree();
        for i in 0..10 {
            file(&mut t, ROOT, &format!("f{i}"));
        }
        // First call: room for 5 entries (`.`, `..`, f0, f1, f2).
        let mut seen = Vec::new();
        let mut last = 0;
        t.readdir(ROOT, 0, |_, cookie, _, n| {
            if seen.len() == 5 {
                return false;
            }
            assert!(cookie > last, "cookies advance and are never 0");
            last = cookie;
            seen.push(String::from_utf8_lossy(n).into_owned());
            true
        })
        .unwrap();
        // Remove the last entry returned and the next one due, then continue.
        t.unlink(ROOT, b"f2").unwrap();
        t.unlink(ROOT, b"f3").unwrap();
        t.readdir(ROOT, last, |_, cookie, _, n| {
            assert!(cookie > last);
            seen.push(String::from_utf8_lossy(n).into_owned());
            true
        })
        .unwrap();
        assert_eq!(
            seen,
            [
                ".", "..", "f0", "f1", "f2", "f4", "f5", "f6", "f7", "f8", "f9"
            ]
        );
        // The end: nothing after the last cookie.
        let mut more = 0;
        t.readdir(ROOT, u64::MAX - 1, |_, _, _, _| {
            more += 1;
            true
        })
        .unwrap();
        assert_eq!(more, 0);
        let f0 = t.lookup(ROOT, b"f0").unwrap().0;
        assert_eq!(t.readdir(f0, 0, |_, _, _, _| true), Err(Errno::ENOTDIR));
    }

    #[test]
    fn dot_and_dotdot_by_node_id() {
        let mut t = tree();
        let d = dir(&mut t, ROOT, "d");
        let f = file(&mut t, d, "f");
        assert_eq!(
            t.lookup(f, b".").unwrap().0,
            f,
            "\".\" of a file is the file"
        );
        assert_eq!(t.lookup(d, b"..").unwrap().0, ROOT);
        assert_eq!(
            t.lookup(ROOT, b"..").unwrap().0,
            ROOT,
            "the root is its own parent"
        );
        assert_eq!(t.lookup(f, b".."), Err(Errno::ENOTDIR));
        let before = t.lookups(f);
        t.lookup(f, b".").unwrap();
        assert_eq!(t.lookups(f), before + 1, "counted as any lookup");
        t.unlink(d, b"f").unwrap();
        assert_eq!(
            t.lookup(f, b"."),
            Err(Errno::ENOENT),
            "a deleted file's handle is stale"
        );
    }

    #[test]
    fn enospc_at_capacity() {
        // Room for three pages of data once the four inodes are made.
        let mut t = Tree::new(4 * INODE_COST + 3 * PAGE, ME);
        let f = file(&mut t, ROOT, "f");
        file(&mut t, ROOT, "g");
        dir(&mut t, ROOT, "d");
        let full = 3 * PAGE as usize;
        assert_eq!(t.write(f, 0, &vec![1; full + 1], false), Err(Errno::ENOSPC));
        assert_eq!(
            t.getattr(f).unwrap().size,
            0,
            "a failed write changes nothing"
        );
        t.write(f, 0, &vec![1; full], false).unwrap();
        // Overwriting in place needs no space.
        t.write(f, 5, &[2; 100], false).unwrap();
        assert_eq!(t.write(f, full as u64, b"x", false), Err(Errno::ENOSPC));
        // Growing makes a hole, which costs nothing (as on tmpfs); shrink back.
        let grow = |size| SetAttr {
            size: Some(size),
            ..SetAttr::default()
        };
        t.setattr(f, &grow(999_999_999_999_999)).unwrap();
        t.setattr(f, &grow(full as u64)).unwrap();
        assert_eq!(t.fallocate(f, 0, full as u64 + 1, 0), Err(Errno::ENOSPC));
        assert_eq!(
            t.fallocate(f, 0, full as u64 + 1, FALLOC_FL_KEEP_SIZE),
            Err(Errno::ENOSPC)
        );
        assert_eq!(t.statfs().bfree, 0);
        assert_eq!(t.statfs().ffree, 0);
        assert_eq!(t.mknod(ROOT, b"h", 0o100_644, 0, ME), Err(Errno::ENOSPC));
        assert_eq!(t.symlink(ROOT, b"l", b"t", ME), Err(Errno::ENOSPC));
        assert_eq!(
            t.create(ROOT, b"h", 0o644, OpenFlags(0), ME),
            Err(Errno::ENOSPC)
        );
        assert_eq!(t.tmpfile(ROOT, 0o644, ME), Err(Errno::ENOSPC));
        assert_eq!(t.setxattr(f, b"user.a", b"v", 0), Err(Errno::ENOSPC));
        // Shrinking gives space back.
        let shrink = SetAttr {
            size: Some(0),
            ..SetAttr::default()
        };
        t.setattr(f, &shrink).unwrap();
        assert_eq!(t.statfs().bfree, 3);
        assert!(t.mknod(ROOT, b"h", 0o100_644, 0, ME).is_ok());
    }

    #[test]
    fn xattr_flags() {
        let mut t = tree();
        let f = file(&mut t, ROOT, "f");
        assert_eq!(t.getxattr(f, b"user.a"), Err(Errno::ENODATA));
        assert_eq!(
            t.setxattr(f, b"user.a", b"1", XATTR_REPLACE),
            Err(Errno::ENODATA)
        );
        t.setxattr(f, b"user.a", b"1", XATTR_CREATE).unwrap();
        assert_eq!(
            t.setxattr(f, b"user.a", b"2", XATTR_CREATE),
            Err(Errno::EEXIST)
        );
        t.setxattr(f, b"user.a", b"22", XATTR_REPLACE).unwrap();
        t.setxattr(f, b"user.b", b"", 0).unwrap();
        assert_eq!(t.getxattr(f, b"user.a").unwrap(), b"22");
        assert_eq!(t.listxattr(f).unwrap(), b"user.a\0user.b\0");
        t.removexattr(f, b"user.a").unwrap();
        assert_eq!(t.removexattr(f, b"user.a"), Err(Errno::ENODATA));
        assert_eq!(t.listxattr(f).unwrap(), b"user.b\0");
        assert_eq!(t.setxattr(f, b"user.c", b"", 3), Err(Errno::EINVAL));
        assert_eq!(
            t.setxattr(f, b"system.posix_acl_access", b"\x02\0\0\0", 0),
            Err(Errno::EOPNOTSUPP)
        );
    }

    #[test]
    fn seek_data_and_hole() {
        let mut t = tree();
        let f = file(&mut t, ROOT, "f");
        t.write(f, 0, &[1; 100], false).unwrap();
        assert_eq!(t.lseek(f, 0, SEEK_DATA), Ok(0));
        assert_eq!(t.lseek(f, 0, SEEK_HOLE), Ok(100), "no hole: EOF");
        assert_eq!(t.lseek(f, 100, SEEK_DATA), Err(Errno::ENXIO));
        assert_eq!(t.lseek(f, 100, SEEK_HOLE), Err(Errno::ENXIO));
        t.write(f, 3 * PAGE, &[1; 10], false).unwrap();
        assert_eq!(t.lseek(f, 50, SEEK_HOLE), Ok(PAGE));
        assert_eq!(t.lseek(f, PAGE, SEEK_DATA), Ok(3 * PAGE));
        assert_eq!(t.lseek(f, 3 * PAGE + 5, SEEK_HOLE), Ok(3 * PAGE + 10));
        t.fallocate(f, 0, PAGE, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)
            .unwrap();
        assert_eq!(t.lseek(f, 0, SEEK_DATA), Ok(3 * PAGE));
        assert_eq!(
            t.fallocate(f, 0, PAGE, FALLOC_FL_PUNCH_HOLE),
            Err(Errno::EOPNOTSUPP)
        );
        assert_eq!(t.fallocate(f, 0, PAGE, 0x10), Err(Errno::EOPNOTSUPP));
        t.fallocate(f, 0, 8 * PAGE, 0).unwrap();
        assert_eq!(t.getattr(f).unwrap().size, 8 * PAGE);
        assert_eq!(t.lseek(f, 0, SEEK_HOLE), Ok(8 * PAGE));
    }

    #[test]
    fn copy_file_range_copies() {
        let mut t = tree();
        let a = file(&mut t, ROOT, "a");
        let b = file(&mut t, ROOT, "b");
        t.write(a, 0, b"0123456789", false).unwrap();
        assert_eq!(t.copy_file_range(a, 2, b, 4, 100, 0), Ok(8));
        assert_eq!(read(&t, b), [&[0; 4][..], b"23456789"].concat());
        assert_eq!(t.copy_file_range(a, 20, b, 0, 5, 0), Ok(0));
        assert_eq!(t.copy_file_range(a, 0, a, 3, 5, 0), Err(Errno::EINVAL));
        assert_eq!(t.copy_file_range(a, 0, a, 10, 5, 0), Ok(5));
        assert_eq!(read(&t, a), b"012345678901234");
    }

    #[test]
    fn tmpfile_and_access() {
        let mut t = tree();
        let (id, attr, fh) = t.tmpfile(ROOT, 0o600, ME).unwrap();
        assert_eq!(attr.nlink, 0);
        assert_eq!(names(&t, ROOT), [".", ".."]);
        t.link(id, ROOT, b"named").unwrap();
        assert_eq!(t.getattr(id).unwrap().nlink, 1);
        t.release(fh);
        assert!(t.exists(id));
        assert_eq!(t.access(id, 6, ME), Ok(()));
        assert_eq!(
            t.access(id, 4, Caller { uid: 1, gid: 1000 }),
            Err(Errno::EACCES)
        );
        assert_eq!(t.access(id, 0, Caller { uid: 1, gid: 1 }), Ok(()));
        assert_eq!(
            t.access(id, 1, Caller { uid: 0, gid: 0 }),
            Err(Errno::EACCES)
        );
        assert_eq!(t.access(id, 6, Caller { uid: 0, gid: 0 }), Ok(()));
    }

    #[test]
    fn create_existing_and_symlink() {
        let mut t = tree();
        let (id, _, fh) = t.create(ROOT, b"f", 0o644, OpenFlags(0o2), ME).unwrap();
        t.write(id, 0, b"abc", false).unwrap();
        assert_eq!(
            t.create(ROOT, b"f", 0o644, OpenFlags(0o302), ME),
            Err(Errno::EEXIST)
        );
        let (again, attr, fh2) = t.create(ROOT, b"f", 0o644, OpenFlags(0o1002), ME).unwrap();
        assert_eq!((again, attr.size), (id, 0));
        assert_eq!(t.lookups(id), 2);
        t.release(fh);
        t.release(fh2);
        let (l, attr) = t.symlink(ROOT, b"l", b"target", ME).unwrap();
        assert_eq!((attr.kind(), attr.size), (Some(FileType::Symlink), 6));
        assert_eq!(t.readlink(l).unwrap(), b"target");
        assert_eq!(t.readlink(id), Err(Errno::EINVAL));
        assert_eq!(t.symlink(ROOT, b"l", b"x", ME), Err(Errno::EEXIST));
    }
}
