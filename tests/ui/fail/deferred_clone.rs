// A deferred request is answered once: its token cannot be cloned.
use ringfuse::reply::kind;
use ringfuse::{Deferred, ReplyEmpty};

fn keep_two(reply: ReplyEmpty<'_>) -> (Deferred<kind::Empty>, Deferred<kind::Empty>) {
    let (_done, token) = reply.defer();
    let copy = token.clone();
    (token, copy)
}

fn main() {
    let _ = keep_two;
}
