//! The widget and the agent console in real headless Chromium.
//!
//! One test binary per group (each links the whole library once); each
//! file is a module, the shared support trees are declared here.

#[path = "../common/mod.rs"]
mod common;

mod console_browser;
mod harness;
mod widget_browser;
