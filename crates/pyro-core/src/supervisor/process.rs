//! The per-workspace supervisor: a detached process that owns the VM.
//!
//! `pyro workspace create` (and `start`) spawn `pyro __supervise <home> <id>`.
//! The supervisor takes the workspace's `supervisor.lock` for its whole life
//! (so anyone can tell it is alive, and the kernel says when it is not),
//! boots the VM from the workspace disk, binds `agent.sock` in the private
//! workspace directory and reports readiness through a pipe its spawner
//! waits on. The VM is tied to the supervisor's main thread
//! (parent-death signal): killing the supervisor kills the VM, and the
//! workspace then reads as crashed.
//!
//! Clients speak the guest protocol itself on the socket, as if the
//! supervisor were the agent: it says hello, and proxies every request a
//! client opens onto the single guest channel under a fresh guest request
//! id, copying frames both ways with the client's own ids. A client that
//! disconnects has its running commands killed. SIGTERM powers the guest
//! off cleanly (disk flushed) and records the workspace as stopped.
//!
//! A second socket, `control.sock`, takes one JSON request per connection
//! ([`super::protocol`]): disk snapshots, answered by the main loop because
//! they need the VM, and the shells and services this process keeps open
//! for the workspace ([`super::dispatch`]), answered by a task per
//! connection.

use std::io::Write;
use std::os::fd::{FromRawFd, RawFd};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use super::dispatch::Sessions;
use super::protocol::{self, ControlReply, ControlRequest, SessionError, REQUEST_LIMIT};
use super::start;
use super::{checkpoint, idle};
use crate::host::boot::describe_exit;
use crate::host::machine::Machine;
use crate::host::network::{attach, bind_ports, merge_ports, publish_all, PublishedPort};
use crate::workspace::ceiling;
use crate::workspace::events;
use crate::workspace::layers::SUSPEND_MEMORY;
use crate::workspace::netlog::{NetLog, Running};
use crate::workspace::store::{WorkspaceState, WorkspaceStore};
use crate::workspace::{CONSOLE, CONTROL, SOCKET};

/// How long a clean power-off may take before the VM is killed.
const POWER_OFF_GRACE: Duration = Duration::from_secs(15);

/// Runs a supervisor to completion; returns the process exit status.
/// `ready_fd` is the write end of the spawner's readiness pipe: the
/// supervisor writes `ok` or an error message there, then closes it.
///
/// The environments come from `cache_dir`, as for the process that spawned
/// it (`PYRO_CACHE_DIR` is passed on).
pub fn run(cache_dir: &Path, home: &Path, id: &str, ready_fd: Option<RawFd>) -> i32 {
    let mut ready = ready_fd.map(|fd| {
        // The VM process must not inherit it, or the spawner would wait for
        // the pipe to close as long as the VM runs.
        // SAFETY: fcntl on a descriptor number; harmless if it is not open.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        // SAFETY: the spawner passes the write end of a pipe it made for us
        // and does not use it otherwise; we own it from here.
        unsafe { std::fs::File::from_raw_fd(fd) }
    });
    let mut report = |message: &str| {
        if let Some(mut pipe) = ready.take() {
            let _ = pipe.write_all(message.as_bytes());
        }
    };
    let store = match WorkspaceStore::open(home) {
        Ok(store) => store,
        Err(e) => {
            report(&pyro_util::error_chain(&e));
            return 1;
        }
    };
    // An idle suspend's use lock, held until the supervisor lock is gone
    // (declared first, dropped last): a call waiting for it then finds
    // the workspace suspended and no supervisor, and resumes it.
    let mut held = None;
    let _lock = match store.supervisor_lock(id) {
        Ok(Some(lock)) => lock,
        Ok(None) => {
            report("another supervisor already runs this workspace");
            return 1;
        }
        Err(e) => {
            report(&pyro_util::error_chain(&e));
            return 1;
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime
        .block_on(supervise(cache_dir, &store, id, &mut report, &mut held))
        .map_err(|error| {
            let crashed = !matches!(error, SuperviseError::Ports(_));
            (pyro_util::error_chain(&error), crashed)
        });
    match result {
        Ok(()) => 0,
        Err((reason, crashed)) => {
            // Recorded before the spawner hears of it: a failed create
            // removes the workspace then, and nothing may write after.
            let _ = store.update(id, |record| {
                // A port taken on the host did not crash anything: the
                // workspace is as stopped as it was.
                record.state = match crashed {
                    true => WorkspaceState::Crashed {
                        reason: reason.clone(),
                    },
                    false => WorkspaceState::Stopped,
                };
                record.supervisor_pid = None;
                Ok(())
            });
            report(&reason);
            1
        }
    }
}

/// Why a supervisor could not start its VM or stopped serving it.
#[derive(Debug, thiserror::Error)]
enum SuperviseError {
    #[error("cannot read the workspace record")]
    Record(#[source] crate::workspace::WorkspaceError),
    #[error("cannot prepare the VM")]
    Machine(#[source] crate::host::machine::MachineError),
    #[error(transparent)]
    Boot(#[from] crate::host::boot::BootError),
    #[error("cannot listen on {}", .path.display())]
    Listen {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot bring the network up")]
    Network(#[source] crate::host::network::NetworkError),
    #[error("cannot publish its ports")]
    Ports(#[source] crate::host::network::NetworkError),
    #[error("cannot watch for SIGTERM")]
    Signal(#[source] std::io::Error),
    #[error("cannot put the seed under /workspace")]
    Seed(#[source] crate::workspace::transfer::TransferError),
    #[error("cannot grow its disk to {size}: {why} (the guest's resize2fs, from e2fsprogs, grows it; a workspace made without a disk size keeps its environment's)")]
    Grow { size: String, why: String },
    /// The VM went away; the reason as the user should read it.
    #[error("{0}")]
    VmGone(String),
}

async fn supervise(
    cache_dir: &Path,
    store: &WorkspaceStore,
    id: &str,
    report: &mut dyn FnMut(&str),
    held: &mut Option<pyro_util::fsutil::FileLock>,
) -> Result<(), SuperviseError> {
    let record = store.read(id).map_err(SuperviseError::Record)?;
    let dir = store.dir(id);
    let machine = Machine::for_env(cache_dir, &record.env).map_err(SuperviseError::Machine)?;
    let shape = record.shape();
    // What an idle suspend writes to the host disk.
    let memory_bytes = record.memory_bytes();
    let mut spec = machine.workspace_spec(
        dir.join(&record.active_disk),
        shape,
        record.seed_disk(&dir),
        Some(dir.join(CONSOLE)),
    );
    start::bound_to_its_workspace(&mut spec, &dir, &record);
    let mut ports = bind_ports(&record.network).map_err(SuperviseError::Ports)?;
    // Taken before it is used: a start that dies meanwhile boots next time.
    let resume = record.resume_from.clone();
    if resume.is_some() {
        store
            .update(id, |record| {
                record.resume_from = None;
                Ok(())
            })
            .map_err(SuperviseError::Record)?;
    }
    let started = start::start_vm(
        &machine,
        (spec, shape),
        resume,
        (&dir, &dir.join(&record.active_disk)),
    )
    .await?;
    let (mut vm, mut boot_report) = (started.booted.vm, started.report);
    let guest = Arc::new(started.booted.guest);
    // Before anything waits on the guest: a restored memory state's
    // sessions have frames on the way.
    let sessions = Arc::new(Sessions::new(
        dir.clone(),
        record.display_name().to_string(),
        Arc::clone(&guest),
    ));
    let restored_own_memory = started.memory.is_some();
    if let Some((manifest, state_dir, once)) = started.memory {
        boot_report.restored = Some(sessions.adopt(manifest.sessions, &state_dir));
        guest.release_adopted().await;
        if once {
            let _ = std::fs::remove_dir_all(&state_dir);
        }
    }
    guest
        .identify(&start::hostname(id), &start::machine_id(id))
        .await
        .map_err(|e| SuperviseError::VmGone(format!("the guest agent stopped answering ({e})")))?;
    // A booted guest's agent mounted the seed itself (this checks it did);
    // one restored from a template saw an empty slot. A guest restored
    // from its own memory has it mounted.
    if record.seed.is_some() && record.seed_slot && !restored_own_memory {
        crate::workspace::seed::mount(&guest)
            .await
            .map_err(SuperviseError::Seed)?;
    }
    if let Some(wanted) = record.disk_bytes {
        super::grow::grow_disk(vm.as_mut(), &guest, wanted)
            .await
            .map_err(|why| SuperviseError::Grow {
                size: pyro_util::human_bytes(wanted),
                why,
            })?;
    }
    let running = Arc::new(Running::default());
    let observer = Arc::new(NetLog::new(dir.clone(), Arc::clone(&running)));
    // Dropped at the end of this function: the stack lives as long as the VM.
    let network = Arc::new(
        attach(
            vm.as_mut(),
            &guest,
            &record.network,
            &start::mac(id),
            observer,
        )
        .await
        .map_err(SuperviseError::Network)?,
    );
    if let Some(network) = network.as_ref() {
        publish_all(network, &mut ports).map_err(SuperviseError::Network)?;
    }

    let socket = dir.join(SOCKET);
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket).map_err(|source| SuperviseError::Listen {
        path: socket.clone(),
        source,
    })?;
    let control_socket = dir.join(CONTROL);
    let _ = std::fs::remove_file(&control_socket);
    let control = UnixListener::bind(&control_socket).map_err(|source| SuperviseError::Listen {
        path: control_socket.clone(),
        source,
    })?;
    let mut stale = Vec::new();
    store
        .update(id, |record| {
            // Running, unless its create was cut short meanwhile (an
            // observer's crash of a start still booting is overwritten).
            if !record.cut_short() {
                record.state = WorkspaceState::Running;
            }
            record.supervisor_pid = Some(std::process::id());
            record.last_boot = Some(boot_report.clone());
            // The record as it is now: a port may have gone meanwhile.
            let merged = merge_ports(&record.network.ports, &ports);
            (record.network.ports, stale) = merged;
            Ok(())
        })
        .map_err(SuperviseError::Record)?;
    if let Some(network) = network.as_ref() {
        for bound in stale {
            network.unpublish(bound).await;
        }
    }
    let memory_key = machine.template_key(shape, checkpoint::MEMORY_TAG);
    let (jobs_tx, mut jobs_rx) = mpsc::channel::<VmJob>(4);
    report("ok");

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(SuperviseError::Signal)?;
    let watched = Arc::clone(&guest);
    let mut guest_gone = Box::pin(async move { watched.closed().await });
    let activity = idle::Activity::new(record.idle_timeout_secs.map(Duration::from_secs));
    // The file-size limit follows what the workspace holds (a snapshot
    // deleted gives room back).
    let mut ceiling_tick = tokio::time::interval(ceiling::REFRESH);
    ceiling_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let outcome = loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    spawn_call(&activity, super::proxy::serve_client(
                        stream,
                        Arc::clone(&guest),
                        store.clone(),
                        id.to_string(),
                        Arc::clone(&running),
                    ));
                }
            }
            accepted = control.accept() => {
                if let Ok((stream, _)) = accepted {
                    spawn_call(&activity, serve_control(
                        stream,
                        Arc::clone(&sessions),
                        jobs_tx.clone(),
                        Arc::clone(&network),
                        Arc::clone(&activity),
                    ));
                }
            }
            _ = ceiling_tick.tick() => ceiling::limit_files(vm.as_mut(), store, id, &dir),
            Some(job) = jobs_rx.recv() => match job {
                VmJob::Snapshot { new_top, memory, reply } => {
                    // Its budget as the workspace stands now (a snapshot
                    // deleted a moment ago gives its room).
                    ceiling::limit_files(vm.as_mut(), store, id, &dir);
                    let saved = checkpoint::snapshot(
                        vm.as_mut(),
                        (&guest, &sessions),
                        (&memory_key, &dir),
                        &new_top,
                        memory.as_deref(),
                    )
                    .await;
                    // The VM writes to the new top from now on: recorded
                    // here, whether or not the caller hears the answer.
                    if saved.is_ok() {
                        checkpoint::record_new_top(store, id, &dir, &new_top);
                        // What froze counts now: the new top has less room.
                        ceiling::limit_files(vm.as_mut(), store, id, &dir);
                    }
                    let _ = reply.send(ControlReply::from_result(saved));
                }
                VmJob::TransferDisk { file, reply } => {
                    let path = file.map(|file| dir.join(file));
                    let set = vm
                        .set_transfer_disk(path.as_deref())
                        .map(|()| true)
                        .map_err(|e| SessionError::Internal(e.to_string()));
                    let _ = reply.send(ControlReply::from_result(set));
                }
                VmJob::Suspend { dir: state, reply, written } => {
                    ceiling::limit_files(vm.as_mut(), store, id, &dir);
                    let saved = checkpoint::suspend(
                        vm.as_mut(),
                        (&guest, &sessions),
                        (store, id),
                        (&memory_key, &state),
                    )
                    .await;
                    match saved {
                        Ok(()) => {
                            let _ = reply.send(ControlReply::from_result(Ok::<_, SessionError>(true)));
                            let _ = tokio::time::timeout(Duration::from_secs(2), written).await;
                            break Ok(Ending::Suspended);
                        }
                        Err(error) => {
                            let _ = reply.send(ControlReply::Error(error));
                        }
                    }
                }
            },
            () = activity.wait() => {
                if !activity.is_idle() {
                    continue;
                }
                // A call on its way holds the use lock, or waits to be accepted.
                let lock = store.try_use_lock(id, true).ok().flatten();
                if lock.is_none() || idle::connection_waiting(&[&listener, &control]) {
                    activity.put_off_briefly();
                    continue;
                }
                // Its memory goes to the host disk: only with room for it.
                let what = "suspending it (its memory)";
                if let Err(error) = ceiling::ensure_room(&dir, &record, memory_bytes, what) {
                    eprintln!("pyro: the idle workspace was not suspended: {error}; it keeps running");
                    activity.put_off_a_while();
                    continue;
                }
                ceiling::limit_files(vm.as_mut(), store, id, &dir);
                let saved = checkpoint::suspend(
                    vm.as_mut(),
                    (&guest, &sessions),
                    (store, id),
                    (&memory_key, SUSPEND_MEMORY),
                )
                .await;
                match saved {
                    Ok(()) => {
                        events::record(&dir, events::EventKind::Suspended);
                        // Held until this process ends: no call meanwhile.
                        *held = lock;
                        break Ok(Ending::Suspended);
                    }
                    Err(error) => {
                        eprintln!("pyro: the idle workspace could not be suspended ({error}); it keeps running");
                        activity.put_off_a_while();
                    }
                }
            }
            _ = terminate.recv() => break Ok(Ending::PowerOff),
            _ = &mut guest_gone => {
                let exit = vm.wait_timeout(Duration::from_secs(2));
                let console = vm.console();
                let mut reason = match exit {
                    Some(exit) => format!("the VM stopped ({})", describe_exit(&exit)),
                    None => "the guest agent stopped answering".to_string(),
                };
                if let Some(diagnosis) = console.diagnose() {
                    reason.push_str(": ");
                    reason.push_str(&diagnosis);
                }
                break Err(SuperviseError::VmGone(reason));
            }
        }
    };
    let _ = std::fs::remove_file(&socket);
    let _ = std::fs::remove_file(&control_socket);
    match outcome {
        // Its sessions live on in the saved memory; the record says so.
        Ok(Ending::Suspended) => {
            vm.kill();
            Ok(())
        }
        Ok(Ending::PowerOff) => {
            sessions.end_all("the workspace was stopped");
            // Flush the guest's disk before the VM goes away: first with
            // the time a large page cache takes under emulation (what an
            // exec wrote before the stop is kept; freed blocks go back to
            // the host), then again as it powers off, within the grace
            // below.
            checkpoint::flush(&guest).await;
            let _ = guest.power_off().await;
            let exited = vm.wait_timeout(POWER_OFF_GRACE);
            if exited.is_none() {
                vm.kill();
            }
            store
                .update(id, |record| {
                    record.state = WorkspaceState::Stopped;
                    record.supervisor_pid = None;
                    Ok(())
                })
                .map_err(SuperviseError::Record)?;
            Ok(())
        }
        Err(reason) => {
            sessions.end_all(&format!("the VM crashed ({reason})"));
            vm.kill();
            Err(reason)
        }
    }
}

/// Serves one connection on a task of its own, counted as a call in
/// progress for the idle timeout until it ends.
fn spawn_call(
    activity: &Arc<idle::Activity>,
    served: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let client = activity.client();
    tokio::spawn(async move {
        served.await;
        drop(client);
    });
}

/// How the main loop ended, when not by the VM going away.
enum Ending {
    /// SIGTERM: power the guest off cleanly.
    PowerOff,
    /// Saved whole: the VM is ended as it is.
    Suspended,
}

/// Work for the main loop, which owns the VM, and where its reply goes.
enum VmJob {
    Snapshot {
        new_top: String,
        memory: Option<String>,
        reply: oneshot::Sender<ControlReply>,
    },
    Suspend {
        dir: String,
        reply: oneshot::Sender<ControlReply>,
        /// Resolves once the reply is written: the process ends after.
        written: oneshot::Receiver<()>,
    },
    TransferDisk {
        file: Option<String>,
        reply: oneshot::Sender<ControlReply>,
    },
}

/// Answers one control connection: snapshots through the main loop, the
/// network's policy, shells and services right here.
async fn serve_control(
    stream: UnixStream,
    sessions: Arc<Sessions>,
    jobs: mpsc::Sender<VmJob>,
    network: Arc<Option<pyro_net::Network>>,
    activity: Arc<idle::Activity>,
) {
    let (reader, mut writer) = stream.into_split();
    let mut reader = tokio::io::BufReader::new(reader);
    let reply = match protocol::read_request(&mut reader, REQUEST_LIMIT).await {
        Err(error) => ControlReply::Error(error),
        Ok(ControlRequest::Snapshot { new_top, memory }) => {
            let (reply, answer) = oneshot::channel();
            vm_job(
                &jobs,
                VmJob::Snapshot {
                    new_top,
                    memory,
                    reply,
                },
                answer,
            )
            .await
        }
        Ok(ControlRequest::Suspend { dir }) => {
            let (reply, answer) = oneshot::channel();
            let (done, written) = oneshot::channel();
            let job = VmJob::Suspend {
                dir,
                reply,
                written,
            };
            let reply = vm_job(&jobs, job, answer).await;
            protocol::write_reply(&mut writer, reply).await;
            let _ = done.send(());
            return;
        }
        Ok(ControlRequest::TransferDisk { file }) => {
            let (reply, answer) = oneshot::channel();
            vm_job(&jobs, VmJob::TransferDisk { file, reply }, answer).await
        }
        Ok(ControlRequest::IdleTimeout { seconds }) => {
            activity.set_timeout(seconds.map(Duration::from_secs));
            ControlReply::from_result(Ok::<_, SessionError>(true))
        }
        // `false`: the VM has no network device to apply it to.
        Ok(ControlRequest::NetworkPolicy(policy)) => {
            let applied = network.as_ref().as_ref().map(|n| n.set_policy(policy));
            ControlReply::from_result(Ok::<_, SessionError>(applied.is_some()))
        }
        Ok(ControlRequest::PortPublish { port }) => {
            ControlReply::from_result(publish(network.as_ref().as_ref(), port))
        }
        // `false`: nothing was published there.
        Ok(ControlRequest::PortUnpublish { bound }) => {
            let done = match network.as_ref() {
                Some(network) => network.unpublish(bound).await,
                None => false,
            };
            ControlReply::from_result(Ok::<_, SessionError>(done))
        }
        Ok(request) => sessions.handle(request).await,
    };
    protocol::write_reply(&mut writer, reply).await;
}

/// Hands `job` to the main loop and waits for its answer.
async fn vm_job(
    jobs: &mpsc::Sender<VmJob>,
    job: VmJob,
    answer: oneshot::Receiver<ControlReply>,
) -> ControlReply {
    let stopped = || ControlReply::Error(SessionError::Invalid("the VM stopped".into()));
    match jobs.send(job).await {
        Ok(()) => answer.await.unwrap_or_else(|_| stopped()),
        Err(_) => stopped(),
    }
}

/// Binds and forwards one more port of a running VM.
fn publish(
    network: Option<&pyro_net::Network>,
    port: pyro_net::Publish,
) -> Result<PublishedPort, SessionError> {
    let network = network.ok_or_else(|| {
        SessionError::Invalid(
            "the VM has no network device; it was started with the network off".into(),
        )
    })?;
    let invalid =
        |e: crate::host::network::NetworkError| SessionError::Invalid(pyro_util::error_chain(&e));
    let mut ports = [PublishedPort::asked(port).bind().map_err(invalid)?];
    publish_all(network, &mut ports).map_err(invalid)?;
    let [port] = ports;
    Ok(port.bound)
}
