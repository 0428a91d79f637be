//! Secrets on AWS (moto server): the functions read the secrets the
//! template names. Its own binary: these tests set environment variables
//! (figment's Jail), which would leak into the other AWS tests' child
//! processes.

#[path = "../common/mod.rs"]
mod common;

mod secrets_aws;
