// `Deferred` is not `Copy`: `Cx::resume` takes the token, so it resumes a request once.
use ringfuse::reply::kind;
use ringfuse::{Cx, Deferred};

fn answer_twice(cx: &mut Cx<'_>, token: Deferred<kind::Empty>) {
    if let Some(reply) = cx.resume(token) {
        let _ = reply.ok();
    }
    if let Some(reply) = cx.resume(token) {
        let _ = reply.ok();
    }
}

fn main() {
    let _ = answer_twice;
}
