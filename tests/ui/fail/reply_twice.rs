// A reply answers once: `ok()` consumes it, so answering again is a use after move.
use core::ffi::CStr;

use ringfuse::{Cx, Done, Errno, Filesystem, NodeId, ReplyEmpty};

struct Fs;

impl Filesystem for Fs {
    fn unlink(
        &mut self,
        _cx: &mut Cx<'_>,
        _parent: NodeId,
        _name: &CStr,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        let _first = reply.ok();
        reply.error(Errno::EIO)
    }
}

fn main() {
    let _ = Fs;
}
