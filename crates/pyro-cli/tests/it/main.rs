//! The `pyro` binary end to end, in one integration-test binary (linked
//! once, the way uv's `tests/it` is): the CLI against real VMs, the MCP
//! server through real clients, the chat hosts' CLIs, and the host side of
//! the boundary. `support` holds the shared harness (`TestHome`, waits
//! with deadlines, the MCP client helpers).
//!
//! Run one area with, e.g.: `cargo test -p pyro-cli --test it workspace_shells::`

mod support;

mod cli;
mod demo;
mod disk;
mod faults;
mod fork;
mod host;
mod host_boundary;
mod hostile;
mod idle;
mod jail;
mod library;
mod load;
mod mcp;
mod mcp_load;
mod mcp_raw;
mod mcp_sessions;
mod memory;
mod modes;
mod network;
mod ports;
mod recipes;
mod run;
mod secrets;
mod seeding;
mod smoke;
mod warm;
mod workspace;
mod workspace_diff;
mod workspace_files;
mod workspace_services;
mod workspace_shells;
mod workspace_snapshots;
mod workspace_summary;
mod workspace_transfer;
