//! Warm VMs, the facade's side: which warm template a new workspace
//! restores from (made on first use), and `env pull --warm`.

use pyro_env::Template;

use super::error::Error;
use super::Pyro;
use crate::host::machine::Machine;
use crate::host::template::{self, Found, Prepare, Shape};
use crate::workspace::diff;
use crate::workspace::store::{ResumePoint, WorkspaceRecord};

/// The template's guest records the empty /workspace as its diff
/// baseline, so an unseeded warm create need not.
fn record_empty_baseline() -> Prepare<'static> {
    Prepare {
        tag: diff::RECORD_TAG,
        run: Box::new(|guest| {
            Box::pin(async move {
                diff::record_baseline(guest)
                    .await
                    .map_err(|e| pyro_util::error_chain(&e))
            })
        }),
    }
}

/// What `env pull --warm` made or found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WarmOutcome {
    /// The template's key.
    pub key: String,
    /// Whether it was made now (else it was there).
    pub built: bool,
    /// How long making it took, milliseconds.
    pub build_ms: Option<u64>,
}

impl Pyro {
    /// What a reset to the baseline of `record` can restore instead of
    /// booting: the warm template its baseline is, when the workspace's
    /// VM is still of that template's shape (its network may have changed).
    pub(crate) fn baseline_resume(&self, record: &WorkspaceRecord) -> Option<ResumePoint> {
        let (key, build) = record.baseline_template.as_ref()?;
        let below = self
            .store()
            .ok()?
            .dir(&record.id)
            .join(record.baseline_layer.as_ref()?);
        let machine = Machine::for_env(&self.cache_dir, &record.env).ok()?;
        if machine.template_key(record.shape(), diff::RECORD_TAG) != *key {
            return None;
        }
        // Gone or made again since: the baseline boots, with nothing to
        // report as a failed restore.
        machine.store.template_build(key, build).ok()?;
        Some(ResumePoint::Template {
            key: key.clone(),
            build: build.clone(),
            below,
        })
    }

    /// The warm template for a workspace of `env` and `shape`, made now
    /// when there is none (calling `stage` first). `None`, with the reason
    /// logged, when it cannot be had: the workspace then boots cold.
    pub(crate) async fn warm_template(
        &self,
        env: &str,
        shape: Shape,
        stage: &mut (dyn FnMut(&str) + Send),
    ) -> Option<Template> {
        let found = async {
            let machine = Machine::for_env(&self.cache_dir, env)?;
            let mut building = || stage("making the warm template (once per environment and size)");
            let prepare = record_empty_baseline();
            Ok::<_, Error>(template::find_or_build(&machine, shape, prepare, &mut building).await?)
        };
        match found.await {
            Ok(found) => Some(found.template().clone()),
            Err(error) => {
                let why = pyro_util::error_chain(&error);
                eprintln!("pyro: no warm template for {env} ({why}); booting cold");
                None
            }
        }
    }

    /// Makes the warm template of `env` for the default workspace size
    /// (network off), unless it is there.
    pub async fn env_warm(&self, env: &str) -> Result<WarmOutcome, Error> {
        let machine = Machine::for_env(&self.cache_dir, env)?;
        let shape = Shape {
            cpus: super::params::DEFAULT_CPUS,
            memory_mib: super::params::DEFAULT_MEMORY_MIB,
            network: false,
        };
        let found =
            template::find_or_build(&machine, shape, record_empty_baseline(), &mut || {}).await?;
        let (template, build_ms) = match &found {
            Found::Ready(t) => (t, None),
            Found::Built(t, took) => (t, Some(took.as_millis() as u64)),
        };
        Ok(WarmOutcome {
            key: template.info.key.clone(),
            built: build_ms.is_some(),
            build_ms,
        })
    }
}
