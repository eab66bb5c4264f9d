//! The library's layers import downward only: a module of `src/` may use the layers below
//! its own, never one above (README, "Workspace"). This reads the sources and fails on any
//! `crate::` path that points up the stack, or that goes through a root re-export (which
//! would hide where it points).

use std::path::{Path, PathBuf};

/// Bottom first. `abi` and `ring` (the workspace's own crates, re-exported at the root) may
/// be used from anywhere.
const LAYERS: &[&str] = &[
    "sys",        // the OS outside io_uring
    "mount",      // putting a connection on a directory
    "error",      // the crate's error type (wraps mount's)
    "state",      // a loop's memory, tags, counters
    "api",        // what a filesystem is written against
    "asyncfs",    // async handlers, on top of the API
    "event_loop", // requests in, replies out, both transports
    "session",    // mount + loop + signals, per-CPU
    "testing",    // the in-memory transport
];

fn rank(layer: &str) -> Option<usize> {
    LAYERS.iter().position(|l| *l == layer)
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of one line: nothing of a `//` comment (doc comments name paths in links).
fn code(line: &str) -> &str {
    line.find("//").map_or(line, |i| &line[..i])
}

/// Every `crate::NAME` on a line of code.
fn crate_paths(line: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = code(line);
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        names.push(&after[..end]);
        rest = &after[end..];
    }
    names
}

/// What the check finds wrong in one file of layer `layer` (`None`: the crate root).
fn violations(layer: Option<&str>, text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let own = layer.and_then(rank);
    for (n, line) in text.lines().enumerate() {
        if code(line).contains("use crate::{") {
            found.push(format!("line {}: a grouped `use crate::{{...}}`", n + 1));
        }
        for name in crate_paths(line) {
            // `""`: a grouped import, reported above.
            if matches!(name, "abi" | "ring" | "") {
                continue;
            }
            match (rank(name), own) {
                (None, _) if layer.is_some() => found.push(format!(
                    "line {}: `crate::{name}` is not a layer (a root re-export?): use the \
                     module path",
                    n + 1
                )),
                (Some(to), Some(from)) if to > from => found.push(format!(
                    "line {}: `crate::{name}` is above `{}`",
                    n + 1,
                    layer.unwrap_or_default()
                )),
                _ => {}
            }
        }
    }
    found
}

#[test]
fn the_layers_import_downward_only() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    let mut problems = Vec::new();
    let mut seen = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).expect("under src/");
        let first = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .expect("a UTF-8 path");
        let layer = first.strip_suffix(".rs").unwrap_or(first);
        let layer = (layer != "lib").then_some(layer);
        if let Some(l) = layer {
            assert!(
                rank(l).is_some(),
                "{}: `{l}` is in no layer; add it to LAYERS (and to the README's map)",
                rel.display()
            );
            seen.push(l.to_string());
        }
        let text = std::fs::read_to_string(file).expect("a readable source file");
        for v in violations(layer, &text) {
            problems.push(format!("{}: {v}", rel.display()));
        }
    }
    assert!(
        problems.is_empty(),
        "imports that go up the layers:\n{}",
        problems.join("\n")
    );
    for l in LAYERS {
        assert!(
            seen.iter().any(|s| s == l),
            "layer `{l}` has no file in src/"
        );
    }
}

#[test]
fn the_check_sees_an_upward_import() {
    let up = "use crate::session::Config;\n";
    assert_eq!(violations(Some("api"), up).len(), 1);
    assert_eq!(
        violations(Some("session"), "use crate::api::cx::Cx;\n").len(),
        0
    );
    // A root re-export hides the layer; a comment is not code.
    assert_eq!(violations(Some("state"), "x: crate::Config,\n").len(), 1);
    assert_eq!(
        violations(Some("state"), "/// [`Config`](crate::Config)\n").len(),
        0
    );
    assert_eq!(
        violations(Some("sys"), "use crate::{mount, state};\n").len(),
        1
    );
    assert_eq!(violations(None, "pub use session::Config;\n").len(), 0);
}
