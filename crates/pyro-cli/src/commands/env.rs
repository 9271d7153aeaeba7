//! `pyro env list | pull | inspect | prune`.

use pyro_core::Pyro;
use pyro_util::human_bytes;

use crate::cli::EnvCommand;
use crate::progress::TerminalProgress;

pub fn env(pyro: &Pyro, command: EnvCommand) -> anyhow::Result<i32> {
    match command {
        EnvCommand::List(flags) => {
            let envs = pyro.env_list()?;
            if flags.json {
                return super::print_json(&envs).map(|()| 0);
            }
            println!("{:<16} {:<10} {:>9}  DESCRIPTION", "NAME", "STATE", "SIZE");
            for env in &envs {
                let (state, size) = match &env.installed {
                    Some(info) => ("pulled", human_bytes(info.size_bytes)),
                    None => ("available", "-".to_string()),
                };
                println!(
                    "{:<16} {:<10} {:>9}  {}",
                    env.name, state, size, env.description
                );
            }
        }
        EnvCommand::Pull(args) => {
            let progress = TerminalProgress::new(args.json);
            let result = pyro.env_pull(&args.env, args.force, &progress);
            pyro_core::Progress::finish(&progress);
            let outcome = result?;
            if args.warm && !args.json {
                eprintln!("pyro: making the warm template of {}", args.env);
            }
            let warm = match args.warm {
                true => Some(super::runtime().block_on(pyro.env_warm(&args.env))?),
                false => None,
            };
            if args.json {
                let mut value = serde_json::to_value(&outcome)?;
                value["warm"] = serde_json::to_value(&warm)?;
                return super::print_json(&value).map(|()| 0);
            }
            if outcome.already_present {
                println!("{} is already pulled (use --force to rebuild)", args.env);
            } else {
                println!(
                    "pulled {} in {:.1}s",
                    args.env,
                    outcome.elapsed.as_secs_f64()
                );
            }
            if let Some(warm) = warm {
                let key = &warm.key[..12];
                match warm.build_ms {
                    Some(ms) => println!("made warm template {key} in {:.1}s", ms as f64 / 1e3),
                    None => println!("warm template {key} is ready"),
                }
            }
        }
        EnvCommand::Inspect(args) => {
            let details = pyro.env_inspect(&args.env)?;
            // The details are already a readable document; JSON is the
            // clearest rendering for both people and programs.
            super::print_json(&details)?;
        }
        EnvCommand::Prune(flags) => {
            let report = pyro.env_prune()?;
            if flags.json {
                return super::print_json(&report).map(|()| 0);
            }
            println!("{report}");
        }
    }
    Ok(0)
}
