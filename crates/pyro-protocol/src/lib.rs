//! The host ⇄ guest protocol of pyro: message types and the frame codec.
//!
//! Shared by the host (`pyro-vmm`, `pyro-core`) and the guest agent
//! (`pyro-agent`). This crate holds data and pure encoding logic only: no I/O
//! beyond the blocking `read_frame`/`write_frame` helpers over `std::io`, no
//! async runtime, no knowledge of VMs. The agent links it statically, so keep
//! its dependencies few.
//!
//! # Wire format (generation 1)
//!
//! One byte stream per VM (a virtio-serial port under QEMU, vsock under
//! Firecracker) carries a sequence of frames:
//!
//! ```text
//! offset  size  field
//! 0       4     len      u32 little-endian: number of bytes after this field (5 + payload)
//! 4       4     id       u32 little-endian: request id; 0 = the connection itself
//! 8       1     kind     0 message, 1 stdout, 2 stderr, 3 stdin, 4 file; others reserved
//! 9       len-5 payload  kind 0: one JSON `Message`; kinds 1-4: raw bytes
//! ```
//!
//! - `len` is capped at [`MAX_FRAME_LEN`]; a larger value is a protocol error and
//!   the receiver drops the connection (it cannot resynchronise).
//! - The host picks request ids (non-zero, unique per connection); every frame
//!   about one request (its output, its exit) carries that id, so many
//!   execs can be multiplexed on the one stream.
//! - A data frame with an empty payload marks end of that stream (EOF):
//!   on stdin it closes the command's stdin; on a `WriteFile` it ends the
//!   file.
//! - Frame kinds this side does not know are surfaced as [`FrameKind::Other`]
//!   and ignored by receivers.
//!
//! # Handshake
//!
//! When the agent opens its port it sends `Hello` (id 0) unsolicited. The host
//! may send its own `Hello` at any time (after a snapshot restore, say); the
//! agent applies the host's clock and answers with its `Hello` again. Both
//! carry [`GENERATION`]; a host refuses an agent of another generation.
//! The host may then send `Identity` (id 0, no answer): the guest's
//! hostname, machine-id and fresh entropy for its RNG.
//!
//! Before saving the VM's state the host sends `Quiesce` (id 0) and waits
//! for `Quiesced`; the agent then holds every frame it would write, and
//! the host writes nothing, until the host's next `Hello`. The agent
//! answers that `Hello` first, then sends what it held. A state saved
//! between the two is at a frame boundary both ways, so a VM restored
//! from it (by the same host process or another one that knows the
//! request ids) carries on where it was.
//!
//! # Requests
//!
//! Every request the host starts on a non-zero id ends with exactly one
//! terminal message on that id: `Exited` (a command), `Done` (a file
//! request) or `Error` (either). Nothing of the id follows it.
//!
//! - `Exec` → `Started`, stdout/stderr frames, `Exited`. With `stdin: true`
//!   the host may send stdin frames right after the `Exec`.
//! - `ReadFile` → `FileInfo`, `File` frames, `Done { bytes }`.
//! - `WriteFile` + host `File` frames (empty frame last) → `Done { bytes }`.
//!   A `Signal` on its id cancels it (`Error { kind: Cancelled }`); the
//!   target keeps its old content on every failure.
//! - `ListDir` → one or more `DirEntries`, `Done`.
//! - `Stat` → `FileInfo`, `Done`.
//! - `Probe` → `Done`, or `Error { kind: NotReady }` when the check fails.
//!
//! # Terminals
//!
//! An `Exec` with `pty: {rows, cols}` runs its command on a new
//! pseudo-terminal: the command leads a new session whose controlling
//! terminal it is, with the terminal as descriptors 0, 1 and 2. All its
//! output arrives as stdout frames; the host may always send stdin frames
//! (keystrokes, acked as below). `Resize` on the id sets the window size.
//! `Signal` goes to the terminal's foreground process group (a job the
//! shell started), falling back to the command's own group; `SIGKILL` and
//! `SIGHUP` go to both. The request ends as for pipes, with `Exited` once
//! the command's main process is gone.
//!
//! File requests resolve their path beneath a root directory (`/workspace`
//! unless the request names another), with the kernel refusing any path that
//! leaves it (`..`, an absolute path elsewhere, a symlink pointing out):
//! such a request fails with `invalid_request` and a message starting
//! `path escapes <root>:`.
//!
//! # Flow control of host data
//!
//! Stdin and `WriteFile` data go host → guest faster than a command or a disk
//! may take them, so the agent acknowledges what it has delivered with
//! `Ack { bytes }` on the request's id (incremental counts, sent at least
//! every 64 KiB delivered and whenever its queue for the id runs empty). The
//! host keeps at most [`STDIN_WINDOW`] bytes per request sent but not yet
//! acked. An agent that receives more than that queued for one request fails
//! the request with `invalid_request` (killing its command) rather than
//! buffer without bound. Hosts that predate `Ack` ignore it, as they ignore
//! every message type they do not know.
//!
//! # Evolving the format
//!
//! Messages are JSON objects tagged by `"type"`. New fields must be
//! `Option` or `#[serde(default)]` so that older peers still parse them, and
//! unknown fields are ignored. A message type a peer does not know decodes as
//! [`Message::Unknown`]; the agent answers it with an `unsupported` error.
//! Breaking changes bump [`GENERATION`]; `tests/schema_snapshot.rs` freezes the
//! encoding of each generation.

mod codec;
mod message;

pub use codec::{
    encode_data, encode_frame, encode_message, read_frame, write_frame, DecodeError, Decoder,
    Frame, FrameKind, HEADER_LEN, MAX_FRAME_LEN, MAX_PAYLOAD_LEN,
};
pub use message::{
    DirEntry, ErrorKind, ExecRequest, ExitStatus, FileInfo, FileKind, Message, Probe, PtySize,
};

/// Protocol generation spoken by this build. Bumped on incompatible changes.
pub const GENERATION: u32 = 1;

/// Most bytes of stdin or `WriteFile` data the host may have in flight (sent
/// but not acknowledged by `Ack`) per request (1 MiB).
pub const STDIN_WINDOW: u64 = 1024 * 1024;

/// Name of the virtio-serial port (and vsock port role) the agent serves on.
pub const AGENT_PORT_NAME: &str = "pyro.agent";

/// The guest's network, as the host's stack and the agent both lay it out:
/// the guest at [`GUEST`](net::GUEST)`/`[`PREFIX`](net::PREFIX), routed
/// through [`GATEWAY`](net::GATEWAY), resolving through
/// [`RESOLVER`](net::RESOLVER) (the environments' `/etc/resolv.conf`).
pub mod net {
    use std::net::Ipv4Addr;

    pub const GUEST: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
    pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
    pub const RESOLVER: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);
    pub const PREFIX: u8 = 24;
    /// The guest NIC's MAC address, as QEMU's option spells it.
    pub const GUEST_MAC: &str = "52:54:00:12:34:56";
    /// Kernel command-line word that has the agent load the network
    /// drivers at boot.
    pub const BOOT_FLAG: &str = "pyro.net=1";
}

/// The seed disk, as the host writes it (`pyro-transfer`'s image) and the
/// agent mounts it: an ext4 filesystem holding the seed's tree under
/// [`TREE`](seed::TREE) (the lower layer of `/workspace`) and files for the
/// guest's `/var/lib/pyro` under [`EXTRA`](seed::EXTRA) (the diff
/// baseline), which the agent copies there when it mounts the disk.
pub mod seed {
    pub const TREE: &str = "tree";
    pub const EXTRA: &str = "extra";
    /// The seed slot's device: the disk after the root disk.
    pub const DEVICE: &str = "/dev/vdb";
    /// The transfer slot's device, after it: raw bytes the host swaps in
    /// for one transfer (an export's tar).
    pub const TRANSFER_DEVICE: &str = "/dev/vdc";
}

/// The fuzzing harness: feeds `data` to a [`Decoder`] in uneven pieces and
/// checks its invariants. Shared by the cargo-fuzz target and a unit test.
#[doc(hidden)]
pub fn fuzz_decode(data: &[u8]) {
    let mut decoder = Decoder::new();
    let split = data.first().map(|b| *b as usize % 7 + 1).unwrap_or(1);
    let mut reencoded = Vec::new();
    'feed: for piece in data.chunks(split) {
        decoder.push(piece);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    assert!(frame.payload.len() <= MAX_PAYLOAD_LEN);
                    encode_frame(frame.id, frame.kind, &frame.payload, &mut reencoded);
                    // Parsing may fail, but must not panic.
                    let _ = frame.message();
                }
                Ok(None) => break,
                Err(_) => break 'feed,
            }
        }
    }
    assert!(
        data.starts_with(&reencoded),
        "re-encoded frames differ from the input"
    );
}
