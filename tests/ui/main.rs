//! Compile-fail tests of the type-level promises of the reply API (STYLE.md rule 30):
//!
//! - `reply_twice`: a reply is consumed by its answer, so a second answer does not compile;
//! - `done_forged`, `done_literal`: [`ringfuse::Done`] has a private field, so only a reply
//!   can make one (a method cannot return `Done` without answering);
//! - `deferred_clone`: a [`ringfuse::Deferred`] token has no `clone`;
//! - `deferred_resumed_twice`: nor is it `Copy`: [`ringfuse::Cx::resume`] takes it by value,
//!   so a deferred request cannot be resumed (and answered) twice.
//!
//! Each case is a small program in `fail/` with the compiler's expected error in the
//! `.stderr` file beside it. After a deliberate change of the API or of rustc's wording,
//! regenerate them with `TRYBUILD=overwrite cargo test --test ui` and review the diff.
#![forbid(unsafe_code)]

#[test]
fn type_level_promises() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
}
