//! One long-lived thread for the facade calls whose futures are not `Send`
//! (`Pyro::run`, `Pyro::workspace_exec`: they stream into a `&mut dyn
//! OutputSink`).
//!
//! It also keeps VMs alive: a VM started by `run` dies with the thread that
//! spawned QEMU (parent-death signal), and this thread lives as long as the
//! server, unlike a blocking-pool thread.

use std::future::Future;
use std::pin::Pin;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

type Job = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// A handle to the thread; cheap to clone.
#[derive(Clone)]
pub struct LocalRunner {
    jobs: mpsc::UnboundedSender<Job>,
}

impl LocalRunner {
    /// Starts the thread; it ends when every handle is dropped.
    pub fn start() -> Self {
        let (jobs, mut receiver) = mpsc::unbounded_channel::<Job>();
        std::thread::Builder::new()
            .name("pyro-mcp-vm".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("build the VM thread's runtime");
                let local = tokio::task::LocalSet::new();
                local.block_on(&runtime, async move {
                    while let Some(job) = receiver.recv().await {
                        tokio::task::spawn_local(job());
                    }
                });
            })
            .expect("spawn the VM thread");
        LocalRunner { jobs }
    }

    /// Runs `make(cancel)` on the thread and waits for its output. `cancel`
    /// fires when `token` is cancelled or when the caller's future is
    /// dropped (the client gave up).
    pub async fn run<T, F, Fut>(&self, token: CancellationToken, make: F) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        let child = token.child_token();
        let _cancel_on_drop = child.clone().drop_guard();
        let (sender, receiver) = oneshot::channel();
        // The call's resumes are noted where the call began.
        let notes = pyro_core::ResumeNotes::current().unwrap_or_default();
        let job: Job = Box::new(move || {
            Box::pin(async move {
                let _ = sender.send(notes.scope(make(child)).await);
            })
        });
        self.jobs.send(job).ok()?;
        receiver.await.ok()
    }
}

/// Runs a streaming facade call (exec, run) on the VM thread into a capped
/// sink: reports `stage`, then a heartbeat with the output seen so far, then
/// done. `None` when the runner went away.
pub async fn run_streaming<T, F>(
    local: &LocalRunner,
    progress: crate::progress::Progress,
    cancel: CancellationToken,
    stage: &str,
    call: F,
) -> Option<(T, crate::output::CapSink)>
where
    T: Send + 'static,
    F: AsyncFnOnce(&mut crate::output::CapSink, CancellationToken) -> T + Send + 'static,
{
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sink_seen = seen.clone();
    progress.stage(stage);
    let ran = progress
        .with_heartbeat(
            local.run(cancel, move |cancel| async move {
                let mut sink = crate::output::CapSink {
                    seen: sink_seen,
                    ..crate::output::CapSink::default()
                };
                let report = call(&mut sink, cancel).await;
                (report, sink)
            }),
            |elapsed| {
                format!(
                    "running ({}s, {} bytes of output so far)",
                    elapsed.as_secs(),
                    seen.load(std::sync::atomic::Ordering::Relaxed)
                )
            },
        )
        .await;
    progress.done().await;
    ran
}
