// `Done` proves that a request was answered: a filesystem cannot make one itself.
use core::ffi::CStr;

use ringfuse::{Cx, Done, Filesystem, NodeId, ReplyEmpty};

struct Fs;

impl Filesystem for Fs {
    fn unlink(
        &mut self,
        _cx: &mut Cx<'_>,
        _parent: NodeId,
        _name: &CStr,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        // Leaves the request unanswered, if this compiled.
        drop(reply);
        ringfuse::Done(())
    }
}

fn main() {
    let _ = Fs;
}
