//! Workspace lifecycle: create (seeded), list, status, update, stop,
//! start, delete and logs.

use pyro_util::fsutil::FileLock;
use std::future::Future;
use std::path::PathBuf;

use super::error::Error;
use super::host_paths::HostPathUse;
use super::network::{NetworkRequest, NetworkUpdate};
use super::params;
use super::params::modes::Settled;
use super::Pyro;
use crate::host::template::Shape;
use crate::supervisor::{launch, registry};
use crate::workspace::hostgit::{self, RepoUrl, Trust};
use crate::workspace::mode::Mode;
use crate::workspace::seed::{self, SeedImage};
use crate::workspace::store::{self, ResumePoint, WorkspaceRecord, WorkspaceState, WorkspaceStore};
use crate::workspace::{
    diff, events, transfer, Seed, WorkspaceError, DISK, SEED_IMAGE, TEMPLATE_DISK,
};

/// What `workspace create` asks for.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    /// The environment to boot, e.g. `debian:12`.
    pub env: String,
    /// An optional unique name to use instead of the id.
    pub name: Option<String>,
    /// Free-form `key=value` labels.
    pub labels: Vec<(String, String)>,
    /// The workflow it is for: its defaults fill what is not given here.
    pub mode: Option<Mode>,
    /// vCPUs of the VM (default: the mode's, else 1).
    pub cpus: Option<u32>,
    /// Memory of the VM, MiB (default: the mode's, else 1024).
    pub memory_mib: Option<u32>,
    /// What lands in /workspace: the baseline.
    pub seed: Option<Seed>,
    /// Paths of the seed to leave out (gitignore syntax), besides what its
    /// `.pyroignore` names.
    pub exclude: Vec<String>,
    /// The VM's network (default: the mode's, else none).
    pub network: NetworkRequest,
    /// Whether the mode may open the network: false from an MCP server
    /// whose profile gives workspaces none.
    pub network_permitted: bool,
    /// Secrets to keep for the workspace's commands (given to none unless
    /// a call names them).
    pub secrets: Vec<super::secrets::SecretInput>,
    /// Restore the environment's warm template instead of booting a kernel
    /// (made on first use); when that fails, it boots anyway.
    /// `PYRO_COLD_BOOT=1` overrides it for every create.
    pub warm: bool,
    /// Suspend the workspace when no call has touched it for this long
    /// (see [`params::idle_timeout`]); `Some(None)` is off, `None` the
    /// mode's.
    pub idle_timeout: Option<Option<std::time::Duration>>,
    /// Its ceiling on host bytes, snapshots included (see
    /// [`params::max_host_disk`]; default: twice its disk).
    pub max_host_bytes: Option<u64>,
    /// Its disk's size (see [`params::disk_size`]; default: the
    /// environment's, 8 GiB), no smaller than the environment's.
    pub disk_bytes: Option<u64>,
}

/// What `workspace update` changes; what is `None` (or empty) stays.
#[derive(Debug, Clone, Default)]
pub struct UpdateRequest {
    /// A new unique name.
    pub name: Option<String>,
    /// Labels to set; an empty value removes one.
    pub labels: Vec<(String, String)>,
    /// The network's mode and allowlist.
    pub network: NetworkUpdate,
    /// A new idle timeout; `Some(None)` turns it off.
    pub idle_timeout: Option<Option<std::time::Duration>>,
}

impl CreateRequest {
    /// What it gives explicitly, for its mode to fill the rest.
    fn asked(&self) -> params::modes::Asked {
        params::modes::Asked {
            cpus: self.cpus,
            memory_mib: self.memory_mib,
            network: self.network.clone(),
            idle_timeout: self.idle_timeout,
            secrets: !self.secrets.is_empty(),
            network_permitted: self.network_permitted,
        }
    }

    /// A workspace of `env` with the default size, no name, labels or seed.
    pub fn new(env: impl Into<String>) -> Self {
        CreateRequest {
            env: env.into(),
            name: None,
            labels: Vec::new(),
            mode: None,
            cpus: None,
            memory_mib: None,
            seed: None,
            exclude: Vec::new(),
            network: NetworkRequest::default(),
            network_permitted: true,
            secrets: Vec::new(),
            warm: true,
            idle_timeout: None,
            max_host_bytes: None,
            disk_bytes: None,
        }
    }
}

impl Pyro {
    /// Creates a workspace, seeds it, and returns once its VM answers. A
    /// seed that cannot be copied in deletes the workspace again.
    pub async fn workspace_create(
        &self,
        request: &CreateRequest,
    ) -> Result<WorkspaceRecord, Error> {
        self.workspace_create_staged(request, &mut |_| {}, std::future::pending())
            .await
    }

    /// [`Pyro::workspace_create`], calling `stage` as each step begins
    /// ("booting VM", "seeding /workspace" with a seed, "recording
    /// baseline"). When `cancel` resolves, creation still runs to its end
    /// (a half-made workspace would be worse), then the workspace is
    /// deleted, since the caller will never learn its id:
    /// [`Error::CreateCancelled`].
    pub async fn workspace_create_staged(
        &self,
        request: &CreateRequest,
        stage: &mut (dyn FnMut(&str) + Send),
        cancel: impl Future<Output = ()>,
    ) -> Result<WorkspaceRecord, Error> {
        let create = self.create(request, stage);
        tokio::pin!(create, cancel);
        let mut cancelled = false;
        let created = loop {
            tokio::select! {
                created = &mut create => break created,
                () = &mut cancel, if !cancelled => cancelled = true,
            }
        };
        if !cancelled {
            return created;
        }
        let record = created?;
        let _ = self.workspace_delete(&record.id).await;
        Err(Error::CreateCancelled {
            workspace: record.id,
        })
    }

    async fn create(
        &self,
        request: &CreateRequest,
        stage: &mut (dyn FnMut(&str) + Send),
    ) -> Result<WorkspaceRecord, Error> {
        // Every cheap check first: a seed is not cloned and imaged for a
        // create that a bad size or an unpulled environment refuses.
        params::check_excludes(request.seed.as_ref(), &request.exclude)?;
        let settled = params::modes::settle(request.mode, request.asked());
        let checked = self.check_create(request, &settled)?;
        // Fetch or check the seed before anything boots.
        let cloned;
        let seed_dir = match &request.seed {
            None => None,
            Some(seed) => Some(match self.seed_source(seed)? {
                SeedSource::Dir(dir) => dir,
                SeedSource::Repo {
                    given,
                    url,
                    reference,
                    trust,
                } => {
                    cloned = hostgit::clone_to_temp(given, &url, reference, trust)?;
                    cloned.path().to_path_buf()
                }
            }),
        };
        // The seed's image, before anything is made: a seed that cannot be
        // read or does not fit fails here, leaving nothing behind.
        let image = match &seed_dir {
            Some(dir) => {
                stage("imaging the seed");
                let scratch = self.store()?.home().to_path_buf();
                Some(seed::build_image(dir, &request.exclude, &scratch).await?)
            }
            None => None,
        };
        // Whether the guest must record the baseline: unseeded, or a seed
        // whose image could not carry one.
        let record_in_guest = image.as_ref().is_none_or(|image| !image.baseline);
        let (record, _creating) = self
            .create_and_boot(request, settled, checked, image, stage)
            .await?;
        // Frozen already: a warm create's baseline is its template's layer
        // (the seed's diff baseline comes with the seed disk; an unseeded
        // template's guest holds the empty /workspace's).
        let baseline_held = record.baseline_layer.is_some();
        let prepared = async {
            if baseline_held {
                return Ok(());
            }
            // The supervisor put the seed under /workspace before it
            // answered.
            let guest = self.connect_workspace(&record.id).await?;
            // The baseline: for diff inside the guest, for reset on disk.
            stage("recording baseline");
            if record_in_guest {
                diff::record_baseline(&guest).await?;
            }
            self.take_baseline(&self.store()?, &record.id).await
        }
        .await;
        let created = prepared.and_then(|()| Ok(self.store()?.created(&record.id)?));
        let record = match created {
            Ok(record) => record,
            Err(error) => {
                let _ = self.workspace_delete(&record.id).await;
                return Err(Error::CreateFailed(Box::new(error)));
            }
        };
        let seed = request.seed.as_ref().map(Seed::describe);
        let env = request.env.clone();
        events::record(
            &self.store()?.dir(&record.id),
            events::EventKind::Created { env, seed },
        );
        Ok(record)
    }

    /// Where a seed comes from, checked against the host paths this caller
    /// may use (the user's own seeds are not confined).
    fn seed_source<'a>(&'a self, seed: &'a Seed) -> Result<SeedSource<'a>, Error> {
        let trust = self.host_paths.trust_for(seed);
        match seed {
            Seed::Path(path) => {
                let path = match trust {
                    Trust::User => path.clone(),
                    Trust::Confined(_) => self.host_paths.check(HostPathUse::Seed, path)?,
                };
                transfer::source_dir(&path)?;
                Ok(SeedSource::Dir(path))
            }
            Seed::Repo { url, reference } => {
                let mut repo = RepoUrl::parse(url)?;
                // Confined: judged where it leads before anything tells
                // whether it exists.
                if let (RepoUrl::Local(dir), Trust::Confined(_)) = (&repo, trust) {
                    let checked = self.host_paths.check(HostPathUse::Repository, dir)?;
                    repo = RepoUrl::Local(checked);
                }
                Ok(SeedSource::Repo {
                    given: url,
                    url: repo,
                    reference: reference.as_deref(),
                    trust,
                })
            }
        }
    }

    /// What a create checks before it does anything: the size, the name,
    /// the secrets, the network and the environment.
    fn check_create(
        &self,
        request: &CreateRequest,
        settled: &Settled,
    ) -> Result<CheckedCreate, Error> {
        params::validate_size(settled.cpus, settled.memory_mib)?;
        if let Some(name) = &request.name {
            self.store()?.check_new_name(name)?;
        }
        let secret_values = super::secrets::read_inputs(&request.secrets)?;
        let network = settled.network.check()?;
        self.check_port_addresses(&network.ports)?;
        let env_store = self.env_store()?;
        let artifacts = env_store.boot_artifacts(&request.env, crate::host::agent_image::AGENT)?;
        let env_disk = artifacts.rootfs_virtual_size;
        if let Some(asked) = request.disk_bytes.filter(|&asked| asked < env_disk) {
            return Err(params::InvalidRequest::DiskSmallerThanEnv {
                asked: pyro_util::human_bytes(asked),
                env: request.env.clone(),
                disk: pyro_util::human_bytes(env_disk),
            }
            .into());
        }
        Ok(CheckedCreate {
            secret_values,
            network,
            env_store,
            artifacts,
        })
    }

    async fn create_and_boot(
        &self,
        request: &CreateRequest,
        settled: Settled,
        checked: CheckedCreate,
        seed: Option<SeedImage>,
        stage: &mut (dyn FnMut(&str) + Send),
    ) -> Result<(WorkspaceRecord, FileLock), Error> {
        // The state right after create is the template's when the guest
        // records nothing: unseeded, or seeded with the baseline on the disk.
        let baseline_is_template = seed.as_ref().is_none_or(|seed| seed.baseline);
        let CheckedCreate {
            secret_values,
            network,
            env_store,
            artifacts,
        } = checked;
        let shape = Shape {
            cpus: settled.cpus,
            memory_mib: settled.memory_mib,
            network: network.mode.is_on(),
        };
        let template = match request.warm && params::warm_by_default() {
            true => self.warm_template(&request.env, shape, stage).await,
            false => None,
        };
        stage(match template {
            Some(_) => "restoring VM",
            None => "booting VM",
        });
        let store = self.store()?;
        let id = store::new_id();
        let record = WorkspaceRecord {
            id: id.clone(),
            name: request.name.clone(),
            env: request.env.clone(),
            labels: request.labels.iter().cloned().collect(),
            mode: settled.mode,
            cpus: settled.cpus,
            memory_mib: settled.memory_mib,
            created_at: store::now(),
            last_activity_at: store::now(),
            state: WorkspaceState::Starting,
            supervisor_pid: None,
            active_disk: DISK.to_string(),
            baseline_layer: None,
            snapshots: Vec::new(),
            network,
            idle_timeout_secs: settled.idle_timeout.map(|timeout| timeout.as_secs()),
            disk_bytes: request.disk_bytes,
            max_host_bytes: Some(
                request
                    .max_host_bytes
                    .unwrap_or_else(|| crate::workspace::ceiling::default_for(request.disk_bytes)),
            ),
            resume_from: None,
            baseline_template: None,
            last_boot: None,
            host_memory: None,
            host_bytes: None,
            creating: false,
            seed_slot: true,
            seed: seed.as_ref().map(|seed| seed.summary.clone()),
        };
        let (dir, creating) = store.create(&record)?;
        let created = async {
            if let Some(seed) = seed {
                let to = dir.join(SEED_IMAGE);
                seed.file.persist(&to).map_err(|error| WorkspaceError::Io {
                    path: to,
                    source: error.error,
                })?;
            }
            super::secrets::store_new(&store, &id, &secret_values)?;
            let key = template.as_ref().map(|t| t.info.key.as_str());
            env_store.pin_with_template(&id, &request.env, key)?;
            // Pinned now: a prune that ran meanwhile shows here.
            let template =
                template.filter(|t| env_store.template_build(&t.info.key, &t.info.build).is_ok());
            // The template's disk layer is copied (it is small): a template
            // removed or made again later leaves this disk whole.
            match &template {
                Some(t) => {
                    let copy = dir.join(TEMPLATE_DISK);
                    fs_err::copy(t.disk(), &copy).map_err(|source| WorkspaceError::Io {
                        path: copy.clone(),
                        source,
                    })?;
                    pyro_vmm::disk::create_layer(&copy, &dir.join(DISK), None)
                }
                None => pyro_vmm::disk::create_overlay(
                    &artifacts.rootfs,
                    pyro_vmm::DiskFormat::Qcow2,
                    &dir.join(DISK),
                ),
            }
            .map_err(WorkspaceError::Disk)?;
            // Then the template's layer is frozen as the baseline before
            // the VM starts.
            if template.is_some() && baseline_is_template {
                self.take_baseline(&store, &id).await?;
            }
            let record = store.update(&id, |record| {
                if let Some(t) = &template {
                    // The top lies over the baseline, else over the copy.
                    let below = record.baseline_layer.as_deref().unwrap_or(TEMPLATE_DISK);
                    record.resume_from = Some(ResumePoint::Template {
                        key: t.info.key.clone(),
                        build: t.info.build.clone(),
                        below: dir.join(below),
                    });
                    if record.baseline_layer.is_some() {
                        record.baseline_template = Some((t.info.key.clone(), t.info.build.clone()));
                    }
                }
                Ok(())
            })?;
            launch::spawn(&self.cache_dir, &store, &record).await?;
            Ok::<(), Error>(())
        }
        .await;
        match created {
            Ok(()) => match store.read(&id) {
                Ok(record) => Ok((record, creating)),
                Err(error) => {
                    let _ = self.workspace_delete(&id).await;
                    Err(Error::CreateFailed(Box::new(error.into())))
                }
            },
            Err(error) => {
                // The one cleanup of a failed create: its VM ended, its
                // pin and directory removed.
                let _ = self.workspace_delete(&id).await;
                Err(Error::CreateFailed(Box::new(error)))
            }
        }
    }

    /// All workspaces, with crashed supervisors detected; `labels` filters
    /// to those carrying every given `key=value`.
    pub fn workspace_list(
        &self,
        labels: &[(String, String)],
    ) -> Result<Vec<WorkspaceRecord>, Error> {
        let store = self.store()?;
        let mut records = Vec::new();
        for record in store.list()? {
            let record = store.observe(&record.id)?;
            if labels.iter().all(|(k, v)| record.labels.get(k) == Some(v)) {
                records.push(record);
            }
        }
        Ok(records)
    }

    /// One workspace by id or name, with a dead supervisor detected.
    pub fn workspace_status(&self, query: &str) -> Result<WorkspaceRecord, Error> {
        let store = self.store()?;
        let id = store.resolve(query)?.id;
        let mut record = store.observe(&id)?;
        if record.state == WorkspaceState::Running {
            record.host_memory = record.supervisor_pid.and_then(crate::host::memory::of_vm);
        }
        let mut bytes = crate::workspace::host_bytes::of_dir(&store.dir(&id));
        bytes.ceiling = Some(crate::workspace::ceiling::of(&record));
        record.host_bytes = Some(bytes);
        Ok(record)
    }

    /// Renames and relabels (an empty value removes a label), changes the
    /// network ([`Pyro::workspace_update_network`]) and the idle timeout,
    /// as `update` asks.
    pub async fn workspace_update(
        &self,
        query: &str,
        update: &UpdateRequest,
    ) -> Result<WorkspaceRecord, Error> {
        let store = self.store()?;
        let id = store.resolve(query)?.id;
        let nothing = update.network.is_empty() && update.idle_timeout.is_none();
        let mut record = match update.name.is_some() || !update.labels.is_empty() || nothing {
            true => store.rename(&id, update.name.clone(), &update.labels)?,
            false => store.read(&id)?,
        };
        if !update.network.is_empty() {
            record = self.workspace_update_network(&id, &update.network).await?;
        }
        if let Some(timeout) = update.idle_timeout {
            record = self.set_idle_timeout(&id, timeout).await?;
        }
        if record.mode.is_some() && !nothing {
            let (network, idle) = (!update.network.is_empty(), update.idle_timeout.is_some());
            record = store.update(&id, |record| {
                params::modes::note_update(record, network, idle);
                Ok(())
            })?;
        }
        Ok(record)
    }

    /// Boots a stopped or crashed workspace from its disk; resumes a
    /// suspended one from its saved memory.
    pub async fn workspace_start(&self, query: &str) -> Result<WorkspaceRecord, Error> {
        let store = self.store()?;
        let id = store.resolve(query)?.id;
        // Not while a snapshot, a fork or the offline disk tools hold the
        // disk.
        let _ops = crate::workspace::layers::ops_lock(&store, &id).await?;
        self.start_locked(&id).await
    }

    /// [`Pyro::workspace_start`] for a caller that holds the workspace's
    /// operation lock.
    pub(crate) async fn start_locked(&self, query: &str) -> Result<WorkspaceRecord, Error> {
        let store = self.store()?;
        let record = store.observe(&store.resolve(query)?.id)?;
        if record.cut_short() {
            return Err(WorkspaceError::CutShort {
                name: record.display_name().to_string(),
            }
            .into());
        }
        if matches!(record.state, WorkspaceState::Suspended { .. }) {
            // The supervisor that suspended it may be on its way out.
            launch::until_gone(&store, &record.id, launch::SUPERVISOR_EXIT).await?;
        }
        if store.supervisor_alive(&record.id)? {
            return Err(WorkspaceError::AlreadyRunning {
                name: record.display_name().to_string(),
            }
            .into());
        }
        // An environment that cannot boot is named here, with its fix,
        // rather than as the supervisor's failure.
        self.env_store()?
            .boot_artifacts(&record.env, crate::host::agent_image::AGENT)?;
        // What a supervisor killed mid-way left (a cut-short save, a layer
        // it made) goes before the next one starts.
        if matches!(record.state, WorkspaceState::Crashed { .. }) {
            crate::workspace::layers::collect_garbage(&store.dir(&record.id), &record);
        }
        let record = store.update(&record.id, |record| {
            record.state = WorkspaceState::Starting;
            Ok(())
        })?;
        launch::spawn(&self.cache_dir, &store, &record).await?;
        events::record(&store.dir(&record.id), events::EventKind::Started);
        Ok(store.read(&record.id)?)
    }

    /// Kills the VM and removes everything of the workspace.
    pub async fn workspace_delete(&self, query: &str) -> Result<WorkspaceRecord, Error> {
        let store = self.store()?;
        let record = store.resolve(query)?;
        // No clean power-off: the disk is about to go.
        launch::kill(&store, &record).await?;
        if let Ok(env_store) = self.env_store() {
            let _ = env_store.unpin(&record.id);
        }
        store.remove(&record.id)?;
        Ok(record)
    }

    /// Ends a workspace's VM for a reset: the supervisor is killed (the
    /// disk top is about to be thrown away) and every shell and service is
    /// recorded as ended by `reason`.
    pub(crate) async fn end_vm(
        &self,
        store: &WorkspaceStore,
        record: &WorkspaceRecord,
        reason: &str,
    ) -> Result<(), Error> {
        launch::kill(store, record).await?;
        registry::end_all(&store.dir(&record.id), reason);
        Ok(())
    }
}

/// What [`Pyro::check_create`] found.
struct CheckedCreate {
    secret_values: std::collections::BTreeMap<String, String>,
    network: crate::host::network::NetworkConfig,
    env_store: pyro_env::EnvStore,
    artifacts: pyro_env::BootArtifacts,
}

/// A checked seed: a host directory to copy, or a repository to clone.
enum SeedSource<'a> {
    Dir(PathBuf),
    Repo {
        given: &'a str,
        url: RepoUrl,
        reference: Option<&'a str>,
        trust: Trust<'a>,
    },
}
