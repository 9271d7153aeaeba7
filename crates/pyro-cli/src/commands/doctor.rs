//! `pyro doctor`.

use pyro_core::Level;
use pyro_core::Pyro;

use crate::cli::DoctorArgs;

pub fn doctor(pyro: &Pyro, args: &DoctorArgs) -> anyhow::Result<i32> {
    let report = pyro.doctor();
    if args.json {
        super::print_json(&report)?;
    } else {
        for check in &report.checks {
            let mark = match check.level {
                Level::Ok => "ok  ",
                Level::Warn => "warn",
                Level::Fail => "FAIL",
            };
            println!("{mark}  {:<13} {}", check.name, check.detail);
            if let Some(fix) = &check.fix {
                println!("      {:<13} fix: {fix}", "");
            }
        }
        println!();
        println!(
            "{}",
            if report.ready {
                "pyro can run VMs on this host."
            } else {
                "pyro cannot run VMs on this host yet: apply the fixes above."
            }
        );
    }
    Ok(if report.ready { 0 } else { 1 })
}
