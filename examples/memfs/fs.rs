//! [`MemFs`]: the [`Filesystem`] over a [`Tree`]. Each method locks the tree, runs one
//! operation and turns its result into the reply; the lock is held until the reply is
//! written, so what a reply says is the tree's state when it was sent.

use core::ffi::CStr;
use core::time::Duration;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ringfuse::abi::flags::{FopenFlags, InitFlags, WriteFlags};
use ringfuse::abi::request::Forgets;
use ringfuse::{
    Attr, CopyRange, Cx, Done, Entry, Errno, Filesystem, InitConfig, NodeId, ReplyAttr,
    ReplyCopied, ReplyCreate, ReplyData, ReplyDir, ReplyDirPlus, ReplyEmpty, ReplyEntry,
    ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, SetAttr,
};

use crate::tree::{Caller, GENERATION, Tree};

/// How long the kernel may trust a name, a negative lookup or attributes. Every change
/// goes through this mount, so the kernel's own invalidation keeps it coherent; the TTL
/// only bounds how stale `st_atime`-like details can look to another process.
const TTL: Duration = Duration::from_secs(1);

/// The in-memory filesystem. Cloning gives another handle on the same tree (an
/// `Arc<Mutex<Tree>>`), which is what a second event loop (`--per-cpu`) needs.
#[derive(Clone, Debug)]
pub(crate) struct MemFs {
    tree: Arc<Mutex<Tree>>,
    /// Whether `init` asks for READDIRPLUS (`--no-readdirplus` turns it off).
    readdirplus: bool,
}

impl MemFs {
    /// An empty filesystem of `capacity` bytes whose root belongs to `owner`; it asks
    /// the kernel for READDIRPLUS if `readdirplus`.
    pub(crate) fn new(capacity: u64, owner: Caller, readdirplus: bool) -> Self {
        Self {
            tree: Arc::new(Mutex::new(Tree::new(capacity, owner))),
            readdirplus,
        }
    }

    fn tree(&self) -> MutexGuard<'_, Tree> {
        // A panic while holding the lock ends that loop; the tree is still usable (every
        // operation checks before it changes anything), so don't spread the panic.
        self.tree.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn caller(cx: &Cx<'_>) -> Caller {
    Caller {
        uid: cx.uid(),
        gid: cx.gid(),
    }
}

fn entry(node: u64, attr: Attr) -> Entry {
    Entry {
        node: NodeId(node),
        generation: GENERATION,
        attr,
        entry_ttl: TTL,
        attr_ttl: TTL,
    }
}

fn answer_entry(reply: ReplyEntry<'_>, r: Result<(u64, Attr), Errno>) -> Done {
    match r {
        Ok((node, attr)) => reply.entry(&entry(node, attr)),
        Err(e) => reply.error(e),
    }
}

fn answer_empty(reply: ReplyEmpty<'_>, r: Result<(), Errno>) -> Done {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

fn answer_attr(reply: ReplyAttr<'_>, r: Result<Attr, Errno>) -> Done {
    match r {
        Ok(attr) => reply.attr(&attr, TTL),
        Err(e) => reply.error(e),
    }
}

fn answer_created(reply: ReplyCreate<'_>, r: Result<(u64, Attr, u64), Errno>) -> Done {
    match r {
        Ok((node, attr, fh)) => reply.created(&entry(node, attr), fh, FopenFlags::KEEP_CACHE),
        Err(e) => reply.error(e),
    }
}

impl Filesystem for MemFs {
    fn init(&mut self, cfg: &mut InitConfig) -> Result<(), Errno> {
        // READDIRPLUS is implemented (with lookup counting), unless switched off on the
        // command line; O_TRUNC is handled in OPEN.
        if self.readdirplus {
            cfg.want |= InitFlags::DO_READDIRPLUS | InitFlags::READDIRPLUS_AUTO;
        }
        cfg.want |= InitFlags::ATOMIC_O_TRUNC;
        // Ids are never reused and LOOKUP answers "." and "..": file handles outlive the
        // kernel's caches.
        cfg.want_export_support();
        Ok(())
    }

    fn lookup(
        &mut self,
        _cx: &mut Cx<'_>,
        parent: NodeId,
        name: &CStr,
        reply: ReplyEntry<'_>,
    ) -> Done {
        match self.tree().lookup(parent.0, name.to_bytes()) {
            Ok((node, attr)) => reply.entry(&entry(node, attr)),
            // The kernel caches the absence for TTL; a create through it drops that.
            Err(e) if e == Errno::ENOENT => reply.negative(TTL),
            Err(e) => reply.error(e),
        }
    }

    fn forget(&mut self, _cx: &mut Cx<'_>, node: NodeId, nlookup: u64) {
        self.tree().forget(node.0, nlookup);
    }

    fn batch_forget(&mut self, _cx: &mut Cx<'_>, forgets: Forgets<'_>) {
        let mut tree = self.tree();
        for f in forgets {
            tree.forget(f.nodeid, f.nlookup);
        }
    }

    fn getattr(
        &mut self,
        _cx: &mut Cx<'_>,
        node: NodeId,
        _fh: Option<u64>,
        reply: ReplyAttr<'_>,
    ) -> Done {
        answer_attr(reply, self.tree().getattr(node.0))
    }

    fn setattr(
        &mut self,
        _cx: &mut Cx<'_>,
        node: NodeId,
        set: &SetAttr,
        reply: ReplyAttr<'_>,
    ) -> Done {
        answer_attr(reply, self.tree().setattr(node.0, set))
    }

    fn readlink(&mut self, _cx: &mut Cx<'_>, node: NodeId, reply: ReplyData<'_>) -> Done {
        let tree = self.tree();
        match tree.readlink(node.0) {
            Ok(target) => reply.data(target),
            Err(e) => reply.error(e),
        }
    }

    fn symlink(
        &mut self,
        cx: &mut Cx<'_>,
        parent: NodeId,
        name: &CStr,
        target: &CStr,
        reply: ReplyEntry<'_>,
    ) -> Done {
        let r = self
            .tree()
            .symlink(parent.0, name.to_bytes(), target.to_bytes(), caller(cx));
        answer_entry(reply, r)
    }

    fn mknod(
        &mut self,
        cx: &mut Cx<'_>,
        parent: NodeId,
        name: &CStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry<'_>,
    ) -> Done {
        // Without DONT_MASK the kernel has already applied the umask to `mode`.
        let r = self
            .tree()
            .mknod(parent.0, name.to_bytes(), mode, rdev, caller(cx));
        answer_entry(reply, r)
    }

    fn mkdir(
        &mut self,
        cx: &mut Cx<'_>,
        parent: NodeId,
        name: &CStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry<'_>,
    ) -> Done {
        let r = self
            .tree()
            .mkdir(parent.0, name.to_bytes(), mode, caller(cx));
        answer_entry(reply, r)
    }

    fn unlink(
        &mut self,
        _cx: &mut Cx<'_>,
        parent: NodeId,
        name: &CStr,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        answer_empty(reply, self.tree().unlink(parent.0, name.to_bytes()))
    }

    fn rmdir(
        &mut self,
        _cx: &mut Cx<'_>,
        parent: NodeId,
        name: &CStr,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        answer_empty(reply, self.tree().rmdir(parent.0, name.to_bytes()))
    }

    fn rename(
        &mut self,
        _cx: &mut Cx<'_>,
        parent: NodeId,
        name: &CStr,
        newparent: NodeId,
        newname: &CStr,
        flags: ringfuse::RenameFlags,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        let r = self.tree().rename(
            parent.0,
            name.to_bytes(),
            newparent.0,
            newname.to_bytes(),
            flags.bits(),
        );
        answer_empty(reply, r)
    }

    fn link(
        &mut self,
        _cx: &mut Cx<'_>,
        node: NodeId,
        newparent: NodeId,
        newname: &CStr,
        reply: ReplyEntry<'_>,
    ) -> Done {
        answer_entry(
            reply,
            self.tree().link(node.0, newparent.0, newname.to_bytes()),
        )
    }

    fn open(
        &mut self,
        _cx: &mut Cx<'_>,
        node: NodeId,
        flags: ringfuse::OpenFlags,
        reply: ReplyOpen<'_>,
    ) -> Done {
        // Every write goes through the kernel, so its page cache stays right across opens.
        match self.tree().open(node.0, flags) {
            Ok(fh) => reply.opened(fh, FopenFlags::KEEP_CACHE),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &mut self,
        _cx: &mut Cx<'_>,
        node: NodeId,
        _fh: u64,
        offset: u64,
        _size: u32,
        mut reply: ReplyData<'_>,
    ) -> Done {
        // Straight into the reply buffer, which is already limited to `size`.
        let r = self.tree().read(node.0, offset, reply.buffer());
        match r {
            Ok(n) => reply.commit(n),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &mut self,
        _cx: &mut Cx<'_>,
        node: NodeId,
        _fh: u64,
        offset: u64,
        data: &[u8],
        write_flags: u32,
        _flags: u32,
        reply: ReplyWrite<'_>,
    ) -> Done {
        let kill = WriteFlags(write_flags).contains(WriteFlags::KILL_SUIDGID);
        match self.tree().write(node.0, offset, data, kill) {
            Ok(n) => reply.written(u32::try_from(n).unwrap_or(u32::MAX)),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &mut self,
        _cx: &mut Cx<'_>,
        _node: NodeId,
        _fh: u64,
        _lock_owner: u64,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        reply.ok()
    }

    fn release(
        &mut self,
        _cx: &mut Cx<'_>,
        _node: NodeId,
        fh: u64,
        _flags: u32,
        _release_flags: u32,
        _lock_owner: u64,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        self.tree().release(fh);
        reply.ok()
    }

    fn fsync(
        &mut self,
        _cx: &mut Cx<'_>,
        _node: NodeId,
        _fh: u64,
        _datasync: bool,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        reply.ok()
    }

    fn opendir(
        &mut self,
        _cx: &mut Cx<'_>,
        node: NodeId,
        _flags: ringfuse::OpenFlags,
        reply: ReplyOpen<'_>,
    ) -> Done {
        // No CACHE_DIR: every listing is made from the current tree.
        match self.tree().opendir(node.0) {
            Ok(fh) => reply.opened(fh, FopenFlags::EMPTY),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &mut self,
        _cx: &mut Cx<'_>,
        node: NodeId,
        fh: u64,
        offset: u64,
        reply: ReplyDir<'_>,
    ) -> Done {
        let mut tree = self.tree();
        if let Err(e) = tree.check_dir(node.0) {
            return reply.error(e);
        }
        reply.dir(|fill| {
            // check_dir passed, so this cannot fail; a full buffer just ends the reply.
            let _ = tree.readdir_handle(fh, node.0, offset, |ino, cookie, kind, name| {
                matches!(
                    fill.add(ino, cookie, kind, name),
                    Ok(ringfuse::reply::DirAdd::Added)
                )
            });
        })
    }

    fn readdirplus(
        &mut self,
        _cx: &mut Cx<'_>,
        node: NodeId,
        fh: u64,
        offset: u64,
        reply: ReplyDirPlus<'_>,
    ) -> Done {
        let mut tree = self.tree();
        if let Err(e) = tree.check_dir(node.0) {
            return reply.error(e);
        }
        reply.dir_plus(|fill| {
            // The tree counts a lookup for each entry that went in (not `.`/`..`, node 0).
            let _ = tree.readdirplus_handle(fh, node.0, offset, |child, attr, cookie, name| {
                let e = if child == 0 {
                    Entry {
                        node: NodeId(0),
                        generation: 0,
                        attr: *attr,
                        entry_ttl: Duration::ZERO,
                        attr_ttl: Duration::ZERO,
                    }
                } else {
                    entry(child, *attr)
                };
                matches!(
                    fill.add(&e, cookie, name),
                    Ok(ringfuse::reply::DirAdd::Added)
                )
            });
        })
    }

    fn releasedir(
        &mut self,
        _cx: &mut Cx<'_>,
        _node: NodeId,
        fh: u64,
        _flags: u32,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        self.tree().release(fh);
        reply.ok()
    }

    fn fsyncdir(
        &mut self,
        _cx: &mut Cx<'_>,
        _node: NodeId,
        _fh: u64,
        _datasync: bool,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        reply.ok()
    }

    fn statfs(&mut self, _cx: &mut Cx<'_>, _node: NodeId, reply: ReplyStatfs<'_>) -> Done {
        let st = self.tree().statfs();
        reply.statfs(&st)
    }

    fn setxattr(
        &mut self,
        _cx: &mut Cx<'_>,
        node: NodeId,
        name: &CStr,
        value: &[u8],
        flags: u32,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        answer_empty(
            reply,
            self.tree().setxattr(node.0, name.to_bytes(), value, flags),
        )
    }

    fn getxattr(
        &mut self,
        _cx: &mut Cx<'_>,
        node: NodeId,
        name: &CStr,
        reply: ReplyXattr<'_>,
    ) -> Done {
        let tree = self.tree();
        match tree.getxattr(node.0, name.to_bytes()) {
            Ok(value) => reply.value(value),
            Err(e) => reply.error(e),
        }
    }

    fn listxattr(&mut self, _cx: &mut Cx<'_>, node: NodeId, reply: ReplyXattr<'_>) -> Done {
        let list = self.tree().listxattr(node.0);
        match list {
            Ok(list) => reply.value(&list),
            Err(e) => reply.error(e),
        }
    }

    fn removexattr(
        &mut self,
        _cx: &mut Cx<'_>,
        node: NodeId,
        name: &CStr,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        answer_empty(reply, self.tree().removexattr(node.0, name.to_bytes()))
    }

    fn access(&mut self, cx: &mut Cx<'_>, node: NodeId, mask: u32, reply: ReplyEmpty<'_>) -> Done {
        // Only sent without `default_permissions` (main.rs turns it on).
        answer_empty(reply, self.tree().access(node.0, mask, caller(cx)))
    }

    fn create(
        &mut self,
        cx: &mut Cx<'_>,
        parent: NodeId,
        name: &CStr,
        mode: u32,
        _umask: u32,
        flags: ringfuse::OpenFlags,
        reply: ReplyCreate<'_>,
    ) -> Done {
        let r = self
            .tree()
            .create(parent.0, name.to_bytes(), mode, flags, caller(cx));
        answer_created(reply, r)
    }

    fn fallocate(
        &mut self,
        _cx: &mut Cx<'_>,
        node: NodeId,
        _fh: u64,
        offset: u64,
        length: u64,
        mode: u32,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        answer_empty(reply, self.tree().fallocate(node.0, offset, length, mode))
    }

    fn lseek(
        &mut self,
        _cx: &mut Cx<'_>,
        node: NodeId,
        _fh: u64,
        offset: u64,
        whence: u32,
        reply: ReplyLseek<'_>,
    ) -> Done {
        match self.tree().lseek(node.0, offset, whence) {
            Ok(off) => reply.offset(off),
            Err(e) => reply.error(e),
        }
    }

    fn copy_file_range(
        &mut self,
        _cx: &mut Cx<'_>,
        range: &CopyRange,
        reply: ReplyCopied<'_>,
    ) -> Done {
        let r = self.tree().copy_file_range(
            range.node_in.0,
            range.off_in,
            range.node_out.0,
            range.off_out,
            range.len,
            range.flags,
        );
        match r {
            Ok(n) => reply.copied(n),
            Err(e) => reply.error(e),
        }
    }

    fn tmpfile(
        &mut self,
        cx: &mut Cx<'_>,
        parent: NodeId,
        mode: u32,
        _umask: u32,
        _flags: ringfuse::OpenFlags,
        reply: ReplyCreate<'_>,
    ) -> Done {
        answer_created(reply, self.tree().tmpfile(parent.0, mode, caller(cx)))
    }
}
