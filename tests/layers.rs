//! The module graph has no cycle: each top-level module of `src/` imports
//! (`crate::NAME`) only modules below it. ARCHITECTURE.md names the layers;
//! this test keeps them honest (comments are not counted).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn rust_files(p: &Path, out: &mut Vec<std::path::PathBuf>) {
    if p.is_dir() {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            rust_files(&e.path(), out);
        }
    } else if p.extension().is_some_and(|e| e == "rs") {
        out.push(p.to_path_buf());
    }
}

/// `crate::NAME` references of each top-level module (lib.rs and the CLI in bin/ excluded).
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut g = BTreeMap::new();
    for e in std::fs::read_dir(&src).unwrap().flatten() {
        let p = e.path();
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        if name == "lib" || name == "bin" {
            continue;
        }
        let mut files = Vec::new();
        rust_files(&p, &mut files);
        let mut deps = BTreeSet::new();
        for f in files {
            for line in std::fs::read_to_string(&f).unwrap().lines() {
                let code = line.split("//").next().unwrap_or("");
                for part in code.split("crate::").skip(1) {
                    let m: String = part.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                    if !m.is_empty() && m != name {
                        deps.insert(m);
                    }
                }
            }
        }
        g.insert(name, deps);
    }
    g
}

#[test]
fn top_level_modules_form_no_cycle() {
    let g = graph();
    assert!(g.len() > 15, "found the modules: {g:?}");
    // Depth-first search for a back edge; report the cycle it closes.
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        path.push(n.to_string());
        for d in g.get(n).into_iter().flatten() {
            match state.get(d.as_str()).copied().unwrap_or(0) {
                1 => {
                    let i = path.iter().position(|p| p == d).unwrap();
                    let mut c = path[i..].to_vec();
                    c.push(d.clone());
                    return Some(c);
                }
                0 if g.contains_key(d) => {
                    if let Some(c) = visit(d, g, state, path) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(n, &g, &mut state, &mut Vec::new()) {
                panic!("module cycle: {}", c.join(" -> "));
            }
        }
    }
}

#[test]
fn the_lowest_layer_imports_nothing_above_it() {
    let g = graph();
    let low = ["error", "tensor", "rng", "fsutil", "pixel", "cpu", "launch"];
    for m in low {
        let above: Vec<&String> = g[m].iter().filter(|d| !low.contains(&d.as_str())).collect();
        assert!(above.is_empty(), "{m} imports {above:?}");
    }
    for (m, below) in [
        ("gpu", &["error", "tensor", "pixel", "fsutil", "launch"][..]),
        ("image_io", &["error", "tensor", "pixel", "fsutil"][..]),
    ] {
        let above: Vec<&String> = g[m].iter().filter(|d| !below.contains(&d.as_str())).collect();
        assert!(above.is_empty(), "{m} imports {above:?}");
    }
}
