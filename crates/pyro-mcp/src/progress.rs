//! Progress notifications for long tool calls.
//!
//! When a `tools/call` request carries `_meta.progressToken`, the long tools
//! send `notifications/progress` as their stages begin, a heartbeat every
//! [`HEARTBEAT`] while they wait, and "done" at the end. Without a token
//! nothing is sent.

use std::future::Future;
use std::time::{Duration, Instant};

use rmcp::model::{ProgressNotificationParam, ProgressToken};
use rmcp::service::RequestContext;
use rmcp::RoleServer;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How often a waiting call reports that it is still going.
pub const HEARTBEAT: Duration = Duration::from_secs(2);

/// The progress reporter of one tool call. Messages are sent in order by a
/// forwarding task, so [`Progress::stage`] can be called from sync code.
pub struct Progress {
    sender: Option<mpsc::UnboundedSender<String>>,
    forwarder: Option<JoinHandle<()>>,
}

impl Progress {
    /// A reporter for the call `context` belongs to; silent without a token.
    pub fn new(context: &RequestContext<RoleServer>) -> Self {
        let Some(token) = context.meta.get_progress_token() else {
            return Progress {
                sender: None,
                forwarder: None,
            };
        };
        let peer = context.peer.clone();
        let (sender, mut receiver) = mpsc::unbounded_channel::<String>();
        let forwarder = tokio::spawn(async move {
            let mut step = 0.0;
            while let Some(message) = receiver.recv().await {
                step += 1.0;
                let param = ProgressNotificationParam::new(ProgressToken::clone(&token), step)
                    .with_message(message);
                if peer.notify_progress(param).await.is_err() {
                    break;
                }
            }
        });
        Progress {
            sender: Some(sender),
            forwarder: Some(forwarder),
        }
    }

    /// Whether the client asked for progress.
    pub fn enabled(&self) -> bool {
        self.sender.is_some()
    }

    /// Reports that `message` (a stage) has begun.
    pub fn stage(&self, message: impl Into<String>) {
        if let Some(sender) = &self.sender {
            let _ = sender.send(message.into());
        }
    }

    /// A sync callback reporting stages, for the facade.
    pub fn stage_fn(&self) -> impl FnMut(&str) + Send + 'static {
        let sender = self.sender.clone();
        move |message: &str| {
            if let Some(sender) = &sender {
                let _ = sender.send(message.to_string());
            }
        }
    }

    /// Awaits `work`, reporting `heartbeat(elapsed)` every [`HEARTBEAT`]
    /// until it finishes.
    pub async fn with_heartbeat<T>(
        &self,
        work: impl Future<Output = T>,
        heartbeat: impl Fn(Duration) -> String,
    ) -> T {
        if !self.enabled() {
            return work.await;
        }
        let started = Instant::now();
        let mut interval = tokio::time::interval_at(
            tokio::time::Instant::from_std(started) + HEARTBEAT,
            HEARTBEAT,
        );
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(work);
        loop {
            tokio::select! {
                output = &mut work => return output,
                _ = interval.tick() => self.stage(heartbeat(started.elapsed())),
            }
        }
    }

    /// Reports "done" and waits until every notification is sent, so they
    /// reach the client before the result.
    pub async fn done(mut self) {
        self.stage("done");
        self.sender = None;
        if let Some(forwarder) = self.forwarder.take() {
            let _ = forwarder.await;
        }
    }
}
