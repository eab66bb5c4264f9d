// `Done`'s field is private: no struct literal makes one either.
fn forge() -> ringfuse::Done {
    ringfuse::Done { 0: () }
}

fn main() {
    let _ = forge();
}
