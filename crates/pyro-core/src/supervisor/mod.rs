//! The per-workspace supervisor: the `pyro __supervise` process that owns
//! a workspace's VM, and the facade's two ways to reach it.
//!
//! Runs in the supervisor process: [`process`] (the VM, the agent socket
//! and the main loop), [`start`] (restore or boot the VM), [`dispatch`] with [`shells`] and [`services`] (what
//! it keeps open for the workspace) and [`logs`] (service logs).
//! Runs in the calling process: [`launch`] (start and end the process) and
//! [`client`] (the only opener of `control.sock`).
//! Shared by both: [`protocol`] (serde-only requests, replies, records and
//! limits) and [`registry`] (the records on disk, which outlive the VM).
//!
//! Code here may use `host` and `workspace`, never the facade (`api`).

mod checkpoint;
pub(crate) mod client;
mod dispatch;
mod grow;
mod idle;
pub(crate) mod launch;
pub(crate) mod logs;
mod process;
pub(crate) mod protocol;
mod proxy;
pub(crate) mod registry;
mod services;
mod shells;
mod start;

pub use process::run;
