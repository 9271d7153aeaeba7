//! A workspace disk larger than its environment's (`--disk-size`): as its
//! VM starts, the supervisor grows the root disk's top layer to the size
//! the workspace was made with (the guest's device sees it at once), then
//! the guest's filesystem, online; at every start, since `resize2fs` of a
//! filesystem that already fills its disk is a quick no-op. A start that
//! grew the disk fails when the filesystem cannot follow; one that found
//! the disk grown already only logs it (a guest that removed `resize2fs`
//! keeps a workspace that starts).

use std::time::Duration;

use pyro_protocol::ExecRequest;
use pyro_vmm::Vm;

use crate::host::guest::{ExecEvent, Guest};

/// How long growing the filesystem may take.
const GROW_LIMIT: Duration = Duration::from_secs(120);

/// How much of the guest's stderr an error quotes.
const SAID_LIMIT: usize = 4096;

/// Grows the VM's root disk and the guest's filesystem to `wanted` bytes.
pub(super) async fn grow_disk(vm: &mut dyn Vm, guest: &Guest, wanted: u64) -> Result<(), String> {
    let failed = |e: &dyn std::error::Error| pyro_util::error_chain(e);
    let size = vm.root_size().map_err(|e| failed(&e))?;
    let grown_now = size < wanted;
    if grown_now {
        vm.grow_root(wanted).map_err(|e| failed(&e))?;
    }
    // The guest's own limit, and a host-side one for a guest that stops
    // answering.
    let limit = GROW_LIMIT + Duration::from_secs(10);
    let grown = tokio::time::timeout(limit, grow_filesystem(guest, wanted))
        .await
        .unwrap_or_else(|_| Err(format!("the guest did not answer in {} s", limit.as_secs())));
    match grown {
        Err(why) if !grown_now => {
            eprintln!("pyro: the guest's filesystem was not grown again: {why}");
            Ok(())
        }
        result => result,
    }
}

/// Waits for the guest's device to show `wanted` bytes, then runs
/// `resize2fs` on it.
async fn grow_filesystem(guest: &Guest, wanted: u64) -> Result<(), String> {
    // The device learns its size from an interrupt: wait for it (at most
    // 5 s), then grow the mounted filesystem. Run at every start: a grow
    // cut short finishes then, and a whole one is a quick no-op.
    let sectors = wanted / 512;
    let script = format!(
        "i=0; while [ \"$(cat /sys/block/vda/size)\" -lt {sectors} ]; do \
         [ $i -ge 100 ] && exit 3; \
         sleep 0.05; i=$((i+1)); done; resize2fs /dev/vda"
    );
    let request = ExecRequest {
        argv: vec!["sh".into(), "-c".into(), script],
        timeout_ms: Some(GROW_LIMIT.as_millis() as u64),
        ..ExecRequest::default()
    };
    let mut stream = guest.exec(request).await.map_err(|e| e.to_string())?;
    let mut said = Vec::new();
    loop {
        match stream.next().await.map_err(|e| e.to_string())? {
            ExecEvent::Stderr(bytes) => {
                let room = SAID_LIMIT.saturating_sub(said.len());
                said.extend_from_slice(&bytes[..bytes.len().min(room)]);
            }
            ExecEvent::Exited(status) if status.code == Some(0) => return Ok(()),
            ExecEvent::Exited(status) if status.code == Some(3) => {
                return Err(format!(
                    "the guest's disk did not show its new size ({}) within 5 s",
                    pyro_util::human_bytes(wanted)
                ))
            }
            ExecEvent::Exited(_) => {
                let said = String::from_utf8_lossy(&said);
                return Err(format!(
                    "resize2fs failed: {}",
                    pyro_util::text::visible(said.trim())
                ));
            }
            ExecEvent::Failed { message, .. } => {
                return Err(format!("resize2fs did not run: {message}"))
            }
            _ => {}
        }
    }
}
