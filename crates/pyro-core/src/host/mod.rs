//! What this host process uses to reach a VM: finding the engine and the
//! environment ([`machine`]), choosing the accelerator ([`accel`]),
//! booting ([`boot`]), the network ([`network`]), the guest channel ([`guest`]) and running one
//! command over it ([`exec`]), a command's stdin ([`input`]), where pyro
//! keeps its files ([`paths`]), warm templates ([`template`]), a VM's host memory ([`memory`]) and the embedded agent ([`agent_image`]).
//!
//! Nothing here knows workspaces or the facade: it is used by the facade
//! (`api/`) and by the supervisor process alike.

pub(crate) mod accel;
pub(crate) mod agent_image;
pub(crate) mod boot;
pub(crate) mod exec;
pub(crate) mod guest;
pub(crate) mod input;
pub(crate) mod machine;
pub(crate) mod memory;
pub(crate) mod network;
pub(crate) mod paths;
pub(crate) mod template;

#[cfg(test)]
mod tests;
