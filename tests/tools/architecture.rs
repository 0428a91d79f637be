//! The layering `docs/architecture.md` promises, checked on the source:
//! the configuration is a leaf that only composition roots import, and the
//! pipeline names no AWS type.

use std::path::{Path, PathBuf};

/// Where adapters are chosen and the configuration is read: the roots.
const ROOTS: &[&str] = &[
    "src/config.rs",
    "src/runtime",
    "src/local",
    "src/lambda",
    "src/bin",
    "src/cli",
    "src/tools",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `(file relative to the crate, line)` for every line of code (not a
/// comment) under `src/` that mentions `needle`.
fn uses(needle: &str) -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut hits = Vec::new();
    for file in files {
        let rel = file
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&file).unwrap();
        for line in text.lines() {
            let code = line.trim_start();
            if !code.starts_with("//") && code.contains(needle) {
                hits.push((rel.clone(), line.trim().to_owned()));
            }
        }
    }
    hits
}

#[test]
fn only_composition_roots_import_the_configuration() {
    let offenders: Vec<_> = uses("crate::config")
        .into_iter()
        .filter(|(file, _)| !ROOTS.iter().any(|r| file.starts_with(r)))
        .collect();
    assert!(
        offenders.is_empty(),
        "modules that are not composition roots import the configuration \
         (take your own settings section instead): {offenders:#?}"
    );
}

#[test]
fn the_pipeline_names_no_aws_type() {
    let offenders: Vec<_> = ["aws_sdk", "aws_config", "crate::aws", "crate::lambda"]
        .iter()
        .flat_map(|needle| uses(needle))
        .filter(|(file, _)| file.starts_with("src/pipeline"))
        .collect();
    assert!(offenders.is_empty(), "{offenders:#?}");
}

#[test]
fn the_scan_sees_the_crate() {
    // The roots themselves import the configuration; a scan that finds
    // nothing would make the checks above pass vacuously.
    assert!(
        uses("crate::config")
            .iter()
            .any(|(file, _)| file.starts_with("src/local"))
    );
}
