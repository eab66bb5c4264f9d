//! The native transport (FUSE-over-io_uring, fuse-protocol.md §5): each entry slot is
//! registered with the kernel (`FUSE_IO_URING_CMD_REGISTER`, an 80-byte `uring_cmd`); a
//! completion means a request sits in its buffers, and one `COMMIT_AND_FETCH` both
//! delivers the reply and re-arms the entry. `/dev/fuse` stays read, by the classic side of
//! the same loop, for INIT, FORGET, INTERRUPT and notifications. [`Native`] follows the
//! transport from INIT to registration, also across per-CPU loops.
//!
//! `unsafe` here: the REGISTER and COMMIT_AND_FETCH commands, which hand the kernel a
//! slot's buffers, and the READ of the INIT eventfd, each with its proof.
#![allow(unsafe_code)]

use crate::abi::Errno;
use crate::abi::flags::InitFlags;
use crate::abi::kernel::{
    FUSE_IO_URING_CMD_COMMIT_AND_FETCH, FUSE_IO_URING_CMD_REGISTER, FUSE_URING_IN_OUT_HEADER_SZ,
    FUSE_URING_OP_IN_OUT_SZ, fuse_out_header, fuse_uring_cmd_req, fuse_uring_ent_in_out,
};
use crate::abi::pod::{as_bytes, read_prefix, write_prefix};
use crate::abi::reply::{self as enc, OUT_HEADER_SIZE};
use crate::abi::request::{Request, fixed_arg_size};
use crate::api::cx::{Env, Io};
use crate::api::fs::Filesystem;
use crate::error::Error;
use crate::ring::{Cqe, Sqe};
use crate::state::SlotKind;
use crate::state::tags::{KIND_ENTRY, KIND_INIT, push, user_data};

use super::request::Action;
use super::{Handled, Loop, Slots, io_error};

/// Offset of `fuse_uring_ent_in_out` in an entry's header buffer.
const ENT_IN_OUT: usize = FUSE_URING_IN_OUT_HEADER_SZ + FUSE_URING_OP_IN_OUT_SZ;

/// Native request payloads up to this size (any name or xattr name: the kernel caps those
/// at 255 bytes plus NUL; two for RENAME) are copied into the aux area so the reply can be
/// built in place; above it the request stays and the reply is built in the aux area,
/// which then bounds it to 4 KiB (only IOCTL can want more after a large input).
const COPY_ASIDE_MAX: usize = 512;

/// Where the REGISTER iovecs live in an entry's header page (after the 288-byte header).
const IOVECS: usize = 2048;

/// The native transport's progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Native {
    /// Not used (classic transport, or the kernel did not offer it).
    Off,
    /// Wanted; INIT not answered yet.
    Wanted,
    /// INIT was answered with `FUSE_OVER_IO_URING`; REGISTER once its WRITE completes.
    Answered { init_slot: usize },
    /// Per-CPU: another loop answers INIT; REGISTER once its event says it did.
    #[cfg_attr(not(feature = "std"), allow(dead_code))] // per-CPU loops need std
    WaitInit,
    /// Entries registered (or being registered).
    On,
}

impl<F: Filesystem> Loop<'_, F> {
    /// [`Native::WaitInit`] (per-CPU, not the first loop): arms the READ of the eventfd
    /// that says another loop answered INIT; whether it is armed.
    pub(super) fn arm_init_event(&mut self) -> Result<bool, Error> {
        let (Native::WaitInit, Some(fd)) = (self.native, self.init_event) else {
            return Ok(false);
        };
        // SAFETY:
        // - `init_buf` is borrowed by this loop for its whole run, nothing else touches
        //   it, and the loop waits for this READ's completion before returning.
        let sqe = unsafe { Sqe::read(fd, self.init_buf, 0) }.user_data(user_data(KIND_INIT, 0));
        push(self.ring, &sqe, self.stats).map_err(|e| io_error("waiting for INIT", e))?;
        Ok(true)
    }

    /// This loop answered INIT from device slot `i`, offering the native transport:
    /// registration waits for that reply's WRITE.
    pub(super) fn init_answered(&mut self, i: usize) {
        let on = self
            .core
            .negotiated
            .is_some_and(|n| n.flags.contains(InitFlags::OVER_IO_URING));
        self.native = if on {
            Native::Answered { init_slot: i }
        } else {
            Native::Off
        };
    }

    /// The WRITE of slot `i` completed with `res`: if it was the INIT reply that took the
    /// native transport, registers the entries (unless `ending`) and tells the other
    /// per-CPU loops.
    pub(super) fn init_written(&mut self, i: usize, res: i32, ending: bool, slots: &mut Slots) {
        let Native::Answered { init_slot } = self.native else {
            return;
        };
        if init_slot != i {
            return;
        }
        self.native = Native::On;
        if res >= 0 && !ending {
            self.register_all(slots);
        }
        for &fd in self.init_notify {
            crate::sys::signal_event(fd);
        }
    }

    /// The INIT event completed with `res` (per-CPU, not the first loop): another loop
    /// answered INIT; registers the entries if it took the native transport.
    pub(super) fn init_elsewhere(&mut self, res: i32, ending: bool, slots: &mut Slots) {
        let on = self
            .core
            .settled()
            .is_some_and(|n| n.flags.contains(InitFlags::OVER_IO_URING));
        if on && !ending && res > 0 {
            self.native = Native::On;
            self.register_all(slots);
        } else {
            self.native = Native::Off;
        }
    }

    /// Registers every native entry.
    pub(super) fn register_all(&mut self, slots: &mut Slots) {
        for i in self.dev_slots..self.meta.len() {
            self.register(i, slots);
        }
    }

    /// `FUSE_IO_URING_CMD_REGISTER` of entry slot `i`: its header page and its payload
    /// buffer, as an `iovec[2]` kept in the header page.
    pub(super) fn register(&mut self, i: usize, slots: &mut Slots) {
        let Some(SlotKind::Entry { qid }) = self.meta.get(i).map(|m| m.kind) else {
            return;
        };
        let (layout, fuse) = (self.layout, self.fuse);
        let Some(slot) = self.slot_bytes(i) else {
            return;
        };
        let (payload, rest) = slot.split_at_mut(layout.request);
        let payload_addr = payload.as_mut_ptr() as u64;
        let Some(header) = rest.get_mut(..4096) else {
            return;
        };
        let header_addr = header.as_mut_ptr() as u64;
        let iov = [header_addr, 4096, payload_addr, layout.request as u64];
        let Some(iov_area) = header.get_mut(IOVECS..IOVECS + 32) else {
            return;
        };
        for (chunk, v) in iov_area.chunks_exact_mut(8).zip(iov) {
            chunk.copy_from_slice(&v.to_ne_bytes());
        }
        let iov_addr = iov_area.as_ptr() as u64;
        let cmd = cmd_req(0, qid);
        // SAFETY:
        // - the command designates the `iovec[2]` at `iov_addr` (read during the REGISTER)
        //   and the two buffers it describes, which the kernel keeps using for every later
        //   request of this entry: all three lie in slot `i` of the slab, which this loop
        //   borrows for its whole run, and which no other slot or operation uses;
        // - the loop touches those buffers only between a completion of this entry and
        //   its next COMMIT_AND_FETCH, when the kernel does not, and `drain` waits for
        //   the entry's last completion (unmount, abort or cancel) before returning.
        let sqe = unsafe { Sqe::uring_cmd80(fuse, FUSE_IO_URING_CMD_REGISTER, iov_addr, 2, &cmd) }
            .user_data(user_data(KIND_ENTRY, i as u64));
        if push(self.ring, &sqe, self.stats).is_ok() {
            slots.entries += 1;
        }
    }

    /// `FUSE_IO_URING_CMD_COMMIT_AND_FETCH` of entry slot `i`: the out header into its
    /// header buffer, the payload length into `ent_in_out`, the payload (copied from the
    /// aux area if it was built there) into its payload buffer.
    pub(super) fn commit(
        &mut self,
        i: usize,
        qid: u16,
        header: &fuse_out_header,
    ) -> Result<(), Errno> {
        let (layout, fuse) = (self.layout, self.fuse);
        let (commit_id, in_aux) = self
            .meta
            .get(i)
            .map(|m| (m.commit_id, m.reply_in_aux))
            .ok_or(Errno::EINVAL)?;
        let payload_len = (header.len as usize).saturating_sub(OUT_HEADER_SIZE);
        let slot = self.slot_bytes(i).ok_or(Errno::EINVAL)?;
        let (payload, rest) = slot.split_at_mut(layout.request);
        let (hdr, aux) = rest.split_at_mut_checked(4096).ok_or(Errno::EINVAL)?;
        if in_aux && payload_len > 0 {
            let src = aux.get(..payload_len).ok_or(Errno::EINVAL)?;
            payload
                .get_mut(..payload_len)
                .ok_or(Errno::EINVAL)?
                .copy_from_slice(src);
        }
        write_prefix(hdr, header).ok_or(Errno::EINVAL)?;
        let ent = fuse_uring_ent_in_out {
            commit_id,
            payload_sz: payload_len as u32,
            ..Default::default()
        };
        write_prefix(hdr.get_mut(ENT_IN_OUT..).ok_or(Errno::EINVAL)?, &ent).ok_or(Errno::EINVAL)?;
        if in_aux {
            self.stats.reply_bytes_copied += payload_len as u64;
        }
        let cmd = cmd_req(commit_id, qid);
        // SAFETY:
        // - COMMIT_AND_FETCH reads the reply from the entry's registered buffers (slot `i`,
        //   borrowed by this loop for its whole run) and later writes the next request
        //   there; the loop does not touch them again until this command completes.
        let sqe = unsafe { Sqe::uring_cmd80(fuse, FUSE_IO_URING_CMD_COMMIT_AND_FETCH, 0, 0, &cmd) }
            .user_data(user_data(KIND_ENTRY, i as u64));
        push(self.ring, &sqe, self.stats)
    }

    /// A native entry completed: a request is in its buffers (`res == 0`), or the entry
    /// ended.
    pub(super) fn on_entry(&mut self, i: usize, cqe: &Cqe, resumed: &mut u32) -> Handled {
        if let Some(m) = self.meta.get_mut(i) {
            m.answered = false;
        }
        match Errno::from_wire(cqe.res()) {
            None => {}
            // The connection is gone (unmount, abort, daemon cancel).
            Some(Errno::ENOTCONN | Errno::ECONNABORTED | Errno::ECANCELED | Errno::ENODEV) => {
                return Handled::Gone;
            }
            // REGISTER before INIT was complete: register again.
            Some(Errno::EAGAIN | Errno::EINTR) => return Handled::Idle,
            // The kernel refused the entry (it then falls back to /dev/fuse) or the commit.
            Some(_) => {
                self.stats.reply_failures += 1;
                return Handled::Busy;
            }
        }
        self.stats.requests_uring += 1;
        let layout = self.layout;
        let Some((view, request, reply)) = self.slab.split(self.meta, i) else {
            return Handled::Busy;
        };
        let Some((hdr, rest)) = reply.split_at_mut_checked(4096) else {
            return Handled::Busy;
        };
        let Some(aux) = rest.get_mut(..4096) else {
            return Handled::Busy;
        };
        let Some((ent, _)) = hdr
            .get(ENT_IN_OUT..)
            .and_then(read_prefix::<fuse_uring_ent_in_out>)
        else {
            return Handled::Busy;
        };
        let payload_sz = (ent.payload_sz as usize).min(request.len());
        // Small payloads (names) are copied aside so the reply can be built in place in the
        // payload buffer; larger ones (WRITE data, SETXATTR values, symlink targets) stay,
        // and the reply, small for every such request, is built in the aux area and copied
        // at commit: copying a 4 KiB WRITE aside cost 0.7 µs per request (perf, 4 KiB
        // random writes), copying its 8-byte reply costs nothing.
        let in_aux = payload_sz > COPY_ASIDE_MAX;
        let parse_cfg = self.core.parse;
        let (in_out, op_area) = hdr.split_at(FUSE_URING_IN_OUT_HEADER_SZ);
        let op_in = op_area.get(..FUSE_URING_OP_IN_OUT_SZ).unwrap_or_default();
        let (reply_area, parsed): (&mut [u8], _) = if in_aux {
            let var = request.get(..payload_sz).unwrap_or_default();
            (aux, parse_split(in_out, op_in, var, parse_cfg))
        } else {
            let (copy, _) = aux.split_at_mut(payload_sz);
            copy.copy_from_slice(request.get(..payload_sz).unwrap_or_default());
            self.stats.request_bytes_copied += payload_sz as u64;
            (request, parse_split(in_out, op_in, copy, parse_cfg))
        };
        if let Some(m) = view.meta.get_mut(i) {
            m.commit_id = ent.commit_id;
            m.reply_in_aux = in_aux;
            m.reply_off = if in_aux {
                layout.entry_aux().start as u32
            } else {
                0
            };
            m.reply_len = reply_area.len() as u32;
        }
        let (action, unique) = match parsed {
            Ok(req) => {
                let unique = req.header.unique;
                let env = Env {
                    slab: view,
                    resumed,
                    io: Some(Io {
                        ring: self.ring,
                        fuse: self.fuse,
                        notifier: self.notifier,
                    }),
                    stats: self.stats,
                    owner: self.lost.id,
                };
                (
                    self.core.handle(env, i as u32, &req, reply_area, false),
                    unique,
                )
            }
            Err((unique, e)) => {
                self.stats.malformed += 1;
                // Every ring request must be committed; without a readable unique, commit
                // an EIO under the kernel's commit id (which 6.18 sets to the unique).
                let u = unique.unwrap_or(ent.commit_id);
                (Action::Reply(enc::error_header(u, e.errno())), u)
            }
        };
        // Every request that arrives through the ring must be committed, even those that
        // take no reply (FORGET, NOTIFY_REPLY): commit an empty success.
        let action = match action {
            Action::Nothing => Action::Reply(enc::out_header(unique, 0)),
            other => other,
        };
        self.finish(i, action, unique)
    }
}

/// The 80-byte command area of a FUSE `uring_cmd`: `struct fuse_uring_cmd_req`.
fn cmd_req(commit_id: u64, qid: u16) -> [u8; 80] {
    let req = fuse_uring_cmd_req {
        flags: 0,
        commit_id,
        qid,
        padding: [0; 6],
    };
    let mut cmd = [0u8; 80];
    if let Some(dst) = cmd.get_mut(..size_of::<fuse_uring_cmd_req>()) {
        dst.copy_from_slice(as_bytes(&req));
    }
    cmd
}

/// Parses an entry's request: the header area, the opcode's fixed part of `op_in`, the
/// payload. On error, the request's `unique` if its header was readable.
fn parse_split<'b>(
    in_out: &'b [u8],
    op_in: &'b [u8],
    payload: &'b [u8],
    cfg: crate::abi::request::ParseConfig,
) -> Result<Request<'b>, (Option<u64>, crate::abi::request::ParseError)> {
    let header = crate::abi::request::parse_header(in_out).map_err(|e| (None, e))?;
    let fixed = fixed_arg_size(crate::abi::Opcode::from(header.opcode), &cfg).min(op_in.len());
    let op_in = op_in.get(..fixed).unwrap_or_default();
    Request::parse_split(in_out, op_in, payload, &cfg).map_err(|e| (Some(header.unique), e))
}
