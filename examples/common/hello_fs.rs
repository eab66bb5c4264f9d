//! The `hello` filesystem, shared by `examples/hello.rs` (std) and
//! `examples/hello-nolibc` (no std, no libc): one read-only file `hello.txt` =
//! "Hello, world!\n" in a read-only root. It uses `core` only.

use core::ffi::CStr;
use core::time::Duration;

use ringfuse::abi::flags::FopenFlags;
use ringfuse::{
    Attr, Cx, Done, Entry, Errno, FileType, Filesystem, NodeId, ReplyAttr, ReplyData, ReplyDir,
    ReplyEntry, ReplyOpen, ReplyStatfs, SetAttr, Statfs, Timestamp,
};

const TTL: Duration = Duration::from_secs(1);
const HELLO: NodeId = NodeId(2);
const NAME: &[u8] = b"hello.txt";
const CONTENT: &[u8] = b"Hello, world!\n";

/// The filesystem: one read-only file in a read-only root.
pub(crate) struct Hello {
    /// Mount time: every timestamp.
    pub(crate) time: Timestamp,
    /// Owner of both nodes.
    pub(crate) uid: u32,
    /// Group of both nodes.
    pub(crate) gid: u32,
}

impl Hello {
    fn attr(&self, node: NodeId) -> Option<Attr> {
        let mut attr = if node == NodeId::ROOT {
            let mut a = Attr::new(node.0, FileType::Directory, 0o555, self.time);
            a.nlink = 2;
            a
        } else if node == HELLO {
            let mut a = Attr::new(node.0, FileType::RegularFile, 0o444, self.time);
            a.size = CONTENT.len() as u64;
            a.blocks = 1;
            a
        } else {
            return None;
        };
        attr.uid = self.uid;
        attr.gid = self.gid;
        Some(attr)
    }
}

impl Filesystem for Hello {
    fn lookup(
        &mut self,
        _cx: &mut Cx<'_>,
        parent: NodeId,
        name: &CStr,
        reply: ReplyEntry<'_>,
    ) -> Done {
        if parent == HELLO {
            return reply.error(Errno::ENOTDIR);
        }
        match self.attr(HELLO) {
            Some(attr) if parent == NodeId::ROOT && name.to_bytes() == NAME => {
                reply.entry(&Entry {
                    node: HELLO,
                    generation: 1,
                    attr,
                    entry_ttl: TTL,
                    attr_ttl: TTL,
                })
            }
            _ => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(
        &mut self,
        _cx: &mut Cx<'_>,
        node: NodeId,
        _fh: Option<u64>,
        reply: ReplyAttr<'_>,
    ) -> Done {
        match self.attr(node) {
            Some(attr) => reply.attr(&attr, TTL),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &mut self,
        _cx: &mut Cx<'_>,
        node: NodeId,
        _set: &SetAttr,
        reply: ReplyAttr<'_>,
    ) -> Done {
        // Nothing can change: `open(O_TRUNC)`, `truncate`, `chmod` and `touch` fail as an
        // open for writing does (without this they would see ENOSYS).
        match self.attr(node) {
            Some(_) => reply.error(Errno::EACCES),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(
        &mut self,
        _cx: &mut Cx<'_>,
        node: NodeId,
        flags: ringfuse::OpenFlags,
        reply: ReplyOpen<'_>,
    ) -> Done {
        if node == NodeId::ROOT {
            reply.error(Errno::EISDIR)
        } else if node != HELLO {
            reply.error(Errno::ENOENT)
        } else if flags.access_mode() != ringfuse::AccessMode::ReadOnly {
            reply.error(Errno::EACCES)
        } else {
            reply.opened(0, FopenFlags::KEEP_CACHE)
        }
    }

    fn read(
        &mut self,
        _cx: &mut Cx<'_>,
        node: NodeId,
        _fh: u64,
        offset: u64,
        _size: u32,
        reply: ReplyData<'_>,
    ) -> Done {
        if node != HELLO {
            return reply.error(Errno::EISDIR);
        }
        // `data` caps the answer at the request's size; past the end it is empty.
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(CONTENT.len());
        reply.data(CONTENT.get(start..).unwrap_or_default())
    }

    fn opendir(
        &mut self,
        _cx: &mut Cx<'_>,
        node: NodeId,
        _flags: ringfuse::OpenFlags,
        reply: ReplyOpen<'_>,
    ) -> Done {
        if node == NodeId::ROOT {
            reply.opened(0, FopenFlags::CACHE_DIR)
        } else {
            reply.error(Errno::ENOTDIR)
        }
    }

    fn readdir(
        &mut self,
        _cx: &mut Cx<'_>,
        node: NodeId,
        _fh: u64,
        offset: u64,
        reply: ReplyDir<'_>,
    ) -> Done {
        if node != NodeId::ROOT {
            return reply.error(Errno::ENOTDIR);
        }
        // Cookie of an entry = its position + 1: never 0, and "continue after it".
        let entries: [(NodeId, FileType, &[u8]); 3] = [
            (NodeId::ROOT, FileType::Directory, b"."),
            (NodeId::ROOT, FileType::Directory, b".."),
            (HELLO, FileType::RegularFile, NAME),
        ];
        reply.dir(|fill| {
            for (cookie, (node, kind, name)) in (1u64..).zip(entries) {
                if cookie <= offset {
                    continue;
                }
                if !matches!(
                    fill.add(node.0, cookie, kind, name),
                    Ok(ringfuse::reply::DirAdd::Added)
                ) {
                    break;
                }
            }
        })
    }

    fn statfs(&mut self, _cx: &mut Cx<'_>, _node: NodeId, reply: ReplyStatfs<'_>) -> Done {
        reply.statfs(&Statfs {
            blocks: 1,
            bfree: 0,
            bavail: 0,
            files: 2,
            ffree: 0,
            bsize: 4096,
            namelen: 255,
            frsize: 4096,
        })
    }
}
