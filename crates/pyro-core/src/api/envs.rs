//! Environments: the catalog and what is pulled (`pyro env ...`,
//! `env_list`). Thin calls into the store of `pyro-env`.

use pyro_env::{EnvDetails, EnvSummary, Progress, PruneReport, PullOutcome};

use super::error::Error;
use super::Pyro;

impl Pyro {
    /// Every environment of the catalog, and whether it is pulled.
    pub fn env_list(&self) -> Result<Vec<EnvSummary>, Error> {
        Ok(self.env_store()?.list()?)
    }

    /// Builds `env` (unless it is pulled and intact, or `force`), reporting
    /// its steps to `progress`. Needs root and the build tools.
    pub fn env_pull(
        &self,
        env: &str,
        force: bool,
        progress: &dyn Progress,
    ) -> Result<PullOutcome, Error> {
        Ok(self.env_store()?.pull(env, force, progress)?)
    }

    /// The manifest of a pulled environment, with each blob checked.
    pub fn env_inspect(&self, env: &str) -> Result<EnvDetails, Error> {
        Ok(self.env_store()?.inspect(env)?)
    }

    /// Removes what no environment or workspace needs any more.
    pub fn env_prune(&self) -> Result<PruneReport, Error> {
        Ok(self.env_store()?.prune()?)
    }
}
