//! Builds the guest agent as a static binary and hands its path to the
//! crate, which embeds it: the `pyro` binary carries its own agent, so an
//! installed pyro needs no other file to boot a guest.
//!
//! `PYRO_AGENT_BIN=/path/to/pyro-agent` skips the nested build and embeds
//! that file instead (packagers, cross builds).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "x86_64-unknown-linux-gnu";

fn main() {
    println!("cargo:rerun-if-env-changed=PYRO_AGENT_BIN");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let dest = out_dir.join("pyro-agent");
    if let Some(prebuilt) = env::var_os("PYRO_AGENT_BIN") {
        std::fs::copy(&prebuilt, &dest).expect("copy PYRO_AGENT_BIN");
        return;
    }

    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("manifest dir"));
    let crates = manifest_dir.parent().expect("crates dir");
    for watched in [
        "pyro-agent/src",
        "pyro-agent/Cargo.toml",
        "pyro-protocol/src",
        "pyro-protocol/Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", crates.join(watched).display());
    }

    // A target dir of its own, shared by every profile of the outer build so
    // the agent compiles once; it must differ from the outer one, whose lock
    // the outer cargo holds.
    let target_dir = cargo_target_dir(&out_dir).join("pyro-agent");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(crates.parent().expect("workspace root"))
        .args(["build", "--release", "-p", "pyro-agent", "--target", TARGET])
        .arg("--target-dir")
        .arg(&target_dir)
        // Static (no loader in the initramfs) and stripped: the guest kernel
        // unpacks every byte of the initramfs on each boot.
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            "-Ctarget-feature=+crt-static\u{1f}-Cstrip=symbols",
        )
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .expect("run cargo to build the guest agent");
    assert!(status.success(), "building the guest agent failed");
    let built = target_dir.join(TARGET).join("release").join("pyro-agent");
    std::fs::copy(&built, &dest).expect("copy the guest agent");
}

/// The outer build's target dir: the ancestor of OUT_DIR that cargo marked
/// with `CACHEDIR.TAG`.
fn cargo_target_dir(out_dir: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| out_dir.to_path_buf())
}
