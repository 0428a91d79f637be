//! What both browser tests share: where Chromium and the Playwright
//! scripts are, the check that they are installed (a missing browser is a
//! failure, never a skip), and running one script under Node.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use crate::common::root;

/// The whole browser run of one script, start to finish.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// One browser run at a time: two Chromiums on this 2-core machine make
/// the widget's timing steps (polling, typing indicator) miss their
/// deadlines, and CI runs every test of this binary in parallel.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub fn browser_dir() -> PathBuf {
    root().join("tests/browser")
}

pub fn chromium() -> PathBuf {
    std::env::var_os("DESKHAND_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Panics, saying what to run, unless Chromium, Node and Playwright are here.
pub fn require_browser() {
    let fix = "run scripts/setup-browser (Debian's chromium, then npm ci in tests/browser)";
    let chromium = chromium();
    assert!(
        chromium.is_file(),
        "browser tests need Chromium at {} (or set DESKHAND_CHROMIUM): {fix}",
        chromium.display()
    );
    let node = std::process::Command::new("node").arg("--version").output();
    let version = match node {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        _ => panic!("browser tests need Node.js 20 or later on PATH: {fix}"),
    };
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    assert!(
        major >= 20,
        "browser tests need Node.js 20 or later, found {version}: {fix}"
    );
    assert!(
        browser_dir()
            .join("node_modules/playwright-core/package.json")
            .is_file(),
        "browser tests need playwright-core in tests/browser/node_modules: {fix}"
    );
}

/// Runs the browser script `script` (in `tests/browser/`) with `args`; prints its output; panics on failure.
pub async fn run_node(script: &str, args: &[&str]) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let child = tokio::process::Command::new("node")
        .arg(browser_dir().join(script))
        .args(args)
        .current_dir(browser_dir())
        .env("DESKHAND_CHROMIUM", chromium())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts");
    let out = tokio::time::timeout(RUN_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("the browser run took longer than {RUN_TIMEOUT:?}"))
        .expect("node runs");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "browser tests failed ({}); see the steps above",
        out.status
    );
}
