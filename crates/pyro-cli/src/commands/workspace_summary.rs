//! `pyro workspace summary`.

use pyro_core::Pyro;

use crate::cli::WorkspaceRef;

/// Prints what happened since the last reset: text for people and chat
/// models, or the whole summary as JSON.
pub fn summary(pyro: &Pyro, args: &WorkspaceRef) -> anyhow::Result<i32> {
    let summary = super::runtime().block_on(pyro.workspace_summary(&args.workspace))?;
    if args.json {
        super::print_json(&summary)?;
    } else {
        print!("{}", summary.render_text());
    }
    Ok(0)
}
