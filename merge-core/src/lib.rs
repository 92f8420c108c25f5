//! merge-core: the pure heart of xlsync.
//!
//! **Architecture invariant:** no IO of any kind: no files, sockets, processes or environment
//! variables, no clock, no randomness, no threads. Every input (the JSON replica, the xenstore
//! snapshot, the hypervisor's answers) arrives as a value, and every effect (the merged config,
//! the decisions, the repair plan) leaves as a value, so any behaviour can be reproduced from
//! values in a test. See ARCHITECTURE.md.

pub mod config;
pub mod cparse;
pub mod decision;
pub mod hypervisor;
pub mod libxl_log;
pub mod observe;
pub mod plan;
#[cfg(feature = "testkit")]
pub mod protocol;
pub mod reconcile;
pub mod rules;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod xenstore;
