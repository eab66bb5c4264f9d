//! From a parsed request to the [`Filesystem`] method that answers it.
//!
//! This is the one place that knows which operation maps to which method and which reply
//! kind; both transports and the in-memory transport call [`dispatch`]. Requests the
//! session answers itself (INIT, INTERRUPT, DESTROY) are handled by the session before it
//! gets here.

use crate::abi::Errno;
use crate::abi::flags::{FsyncFlags, GetattrFlags, LkFlags};
use crate::abi::kernel::{FUSE_COPY_FILE_RANGE_64, fuse_read_in};
use crate::abi::reply::READLINK_MAX;
use crate::abi::request::{Operation, Request};
use crate::api::attr::NodeId;
use crate::api::cx::Cx;
use crate::api::fs::{CopyRange, Filesystem, IoctlArgs, SetAttr};
use crate::api::open_flags::{OpenFlags, RenameFlags};
use crate::api::reply::{FileLock, Lent, Reply, Whose};
use crate::state::Outcome;

/// No size limit beyond the buffer.
const UNLIMITED: u32 = u32::MAX;

/// Where the answer to one request goes.
pub(crate) struct ReplySlot<'r> {
    /// The reply payload area.
    pub payload: &'r mut [u8],
    /// What the filesystem did.
    pub outcome: &'r mut Outcome,
    /// The request, for deferring.
    pub whose: Whose,
    /// Where a deferring reply leaves its payload area (for a resume in the same call).
    pub lent: &'r Lent<'r>,
}

/// Calls the filesystem for `req`. Operations without a reply (FORGET, BATCH_FORGET,
/// NOTIFY_REPLY) leave the outcome [`Outcome::Pending`]; the caller knows them by opcode.
#[allow(clippy::too_many_lines)] // one arm per opcode: splitting it would hide the table
pub(crate) fn dispatch<F: Filesystem>(
    fs: &mut F,
    cx: &mut Cx<'_>,
    req: &Request<'_>,
    out: ReplySlot<'_>,
) {
    let node = NodeId(req.header.nodeid);
    let unique = req.header.unique;
    let ReplySlot {
        payload,
        outcome,
        whose,
        lent,
    } = out;
    macro_rules! reply {
        () => {
            reply!(UNLIMITED)
        };
        ($limit:expr) => {
            Reply::new(payload, outcome, whose, $limit, Some(lent))
        };
    }
    let _: crate::api::reply::Done = match req.op {
        Operation::Lookup { name } => fs.lookup(cx, node, name, reply!()),
        Operation::Forget { arg } => {
            fs.forget(cx, node, arg.nlookup);
            return;
        }
        Operation::BatchForget { forgets } => {
            fs.batch_forget(cx, forgets);
            return;
        }
        Operation::NotifyReply { arg, data } => {
            // `unique` of a NOTIFY_REPLY is the `notify_unique` of the RETRIEVE.
            fs.retrieve_reply(cx, node, unique, arg.offset, data);
            return;
        }
        Operation::Getattr { arg } => {
            let fh = GetattrFlags(arg.getattr_flags)
                .contains(GetattrFlags::FH)
                .then_some(arg.fh);
            fs.getattr(cx, node, fh, reply!())
        }
        Operation::Setattr { arg } => fs.setattr(cx, node, &SetAttr::from_kernel(&arg), reply!()),
        Operation::Readlink => fs.readlink(cx, node, reply!(READLINK_MAX as u32)),
        Operation::Symlink { name, target } => fs.symlink(cx, node, name, target, reply!()),
        Operation::Mknod { arg, name } => {
            fs.mknod(cx, node, name, arg.mode, arg.umask, arg.rdev, reply!())
        }
        Operation::Mkdir { arg, name } => fs.mkdir(cx, node, name, arg.mode, arg.umask, reply!()),
        Operation::Unlink { name } => fs.unlink(cx, node, name, reply!()),
        Operation::Rmdir { name } => fs.rmdir(cx, node, name, reply!()),
        Operation::Rename { arg, old, new } => fs.rename(
            cx,
            node,
            old,
            NodeId(arg.newdir),
            new,
            RenameFlags(0),
            reply!(),
        ),
        Operation::Rename2 { arg, old, new } => fs.rename(
            cx,
            node,
            old,
            NodeId(arg.newdir),
            new,
            RenameFlags(arg.flags),
            reply!(),
        ),
        Operation::Link { arg, name } => fs.link(cx, NodeId(arg.oldnodeid), node, name, reply!()),
        Operation::Open { arg } => fs.open(cx, node, OpenFlags(arg.flags), reply!()),
        Operation::Read { arg } => read(fs, cx, node, &arg, reply!(arg.size)),
        Operation::Write { arg, data } => fs.write(
            cx,
            node,
            arg.fh,
            arg.offset,
            data,
            arg.write_flags,
            arg.flags,
            reply!(),
        ),
        Operation::Statfs => fs.statfs(cx, node, reply!()),
        Operation::Release { arg } => fs.release(
            cx,
            node,
            arg.fh,
            arg.flags,
            arg.release_flags,
            arg.lock_owner,
            reply!(),
        ),
        Operation::Fsync { arg } => fs.fsync(cx, node, arg.fh, datasync(arg.fsync_flags), reply!()),
        Operation::Setxattr { arg, name, value } => {
            fs.setxattr(cx, node, name, value, arg.flags, reply!())
        }
        Operation::Getxattr { arg, name } => fs.getxattr(cx, node, name, reply!(arg.size)),
        Operation::Listxattr { arg } => fs.listxattr(cx, node, reply!(arg.size)),
        Operation::Removexattr { name } => fs.removexattr(cx, node, name, reply!()),
        Operation::Flush { arg } => fs.flush(cx, node, arg.fh, arg.lock_owner, reply!()),
        Operation::Opendir { arg } => fs.opendir(cx, node, OpenFlags(arg.flags), reply!()),
        Operation::Readdir { arg } => fs.readdir(cx, node, arg.fh, arg.offset, reply!(arg.size)),
        Operation::Readdirplus { arg } => {
            fs.readdirplus(cx, node, arg.fh, arg.offset, reply!(arg.size))
        }
        Operation::Releasedir { arg } => fs.releasedir(cx, node, arg.fh, arg.flags, reply!()),
        Operation::Fsyncdir { arg } => {
            fs.fsyncdir(cx, node, arg.fh, datasync(arg.fsync_flags), reply!())
        }
        Operation::Getlk { arg } => fs.getlk(
            cx,
            node,
            arg.fh,
            arg.owner,
            &FileLock::from_kernel(&arg.lk),
            reply!(),
        ),
        Operation::Setlk { arg } | Operation::Setlkw { arg } => {
            let sleep = matches!(req.op, Operation::Setlkw { .. });
            let flock = LkFlags(arg.lk_flags).contains(LkFlags::FLOCK);
            let lock = FileLock::from_kernel(&arg.lk);
            fs.setlk(cx, node, arg.fh, arg.owner, &lock, sleep, flock, reply!())
        }
        Operation::Access { arg } => fs.access(cx, node, arg.mask, reply!()),
        Operation::Create { arg, name } => fs.create(
            cx,
            node,
            name,
            arg.mode,
            arg.umask,
            OpenFlags(arg.flags),
            reply!(),
        ),
        Operation::Tmpfile { arg, name: _ } => fs.tmpfile(
            cx,
            node,
            arg.mode,
            arg.umask,
            OpenFlags(arg.flags),
            reply!(),
        ),
        Operation::Bmap { arg } => fs.bmap(cx, node, arg.blocksize, arg.block, reply!()),
        Operation::Ioctl { arg, data } => {
            let args = IoctlArgs {
                fh: arg.fh,
                flags: arg.flags,
                cmd: arg.cmd,
                arg: arg.arg,
                in_data: data,
                out_size: arg.out_size,
            };
            fs.ioctl(cx, node, &args, reply!(arg.out_size))
        }
        Operation::Poll { arg } => {
            fs.poll(cx, node, arg.fh, arg.kh, arg.flags, arg.events, reply!())
        }
        Operation::Fallocate { arg } => {
            fs.fallocate(cx, node, arg.fh, arg.offset, arg.length, arg.mode, reply!())
        }
        Operation::Lseek { arg } => fs.lseek(cx, node, arg.fh, arg.offset, arg.whence, reply!()),
        Operation::CopyFileRange { arg } | Operation::CopyFileRange64 { arg } => {
            let range = CopyRange {
                node_in: node,
                fh_in: arg.fh_in,
                off_in: arg.off_in,
                node_out: NodeId(arg.nodeid_out),
                fh_out: arg.fh_out,
                off_out: arg.off_out,
                len: arg.len,
                flags: arg.flags,
            };
            let wide = req.header.opcode == FUSE_COPY_FILE_RANGE_64;
            fs.copy_file_range(cx, &range, reply!().with_wide(wide))
        }
        Operation::Statx { arg } => {
            let fh = GetattrFlags(arg.getattr_flags)
                .contains(GetattrFlags::FH)
                .then_some(arg.fh);
            fs.statx(cx, node, fh, arg.sx_flags, arg.sx_mask, reply!())
        }
        Operation::Syncfs { .. } => fs.syncfs(cx, node, reply!()),
        // Answered by the session before dispatch; if one gets here (a second INIT, a
        // DESTROY on a plain mount), it is a protocol error.
        Operation::Init { .. } | Operation::Interrupt { .. } | Operation::Destroy => {
            Reply::<crate::api::reply::kind::Empty>::new(payload, outcome, whose, UNLIMITED, None)
                .error(Errno::EPROTO)
        }
        // CUSE and DAX requests never reach a plain FUSE server; unknown opcodes come from
        // newer kernels. ENOSYS tells the kernel we do not implement them.
        Operation::CuseInit { .. }
        | Operation::SetupMapping { .. }
        | Operation::RemoveMapping { .. }
        | Operation::Unknown { .. } => {
            Reply::<crate::api::reply::kind::Empty>::new(payload, outcome, whose, UNLIMITED, None)
                .error(Errno::ENOSYS)
        }
    };
}

fn read<F: Filesystem>(
    fs: &mut F,
    cx: &mut Cx<'_>,
    node: NodeId,
    arg: &fuse_read_in,
    reply: crate::api::reply::ReplyData<'_>,
) -> crate::api::reply::Done {
    fs.read(cx, node, arg.fh, arg.offset, arg.size, reply)
}

fn datasync(fsync_flags: u32) -> bool {
    FsyncFlags(fsync_flags).contains(FsyncFlags::FDATASYNC)
}
