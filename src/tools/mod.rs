//! The tools a user runs beside the service, off the ticket path: they
//! compose the real adapters (so they are composition roots and may read
//! the configuration), and nothing on the ticket path imports them.
//!
//! - [`eval`]: `deskhand eval`: retrieval and decision quality on a case set.
//! - [`soak`]: `deskhand soak`: fault injection and the nothing-lost invariant.
//! - [`bench`]: `deskhand bench`: CPU per ticket, local-mode throughput and
//!   latency, Lambda cold start and memory, the worker's round trips,
//!   retrieval latency — numbers a user can re-run.

pub mod bench;
pub mod eval;
pub mod soak;
