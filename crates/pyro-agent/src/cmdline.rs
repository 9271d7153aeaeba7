//! The agent's boot parameters, read from the kernel command line.
//!
//! The host passes `pyro.*` parameters on the kernel command line; the kernel
//! leaves dotted parameters it does not know in `/proc/cmdline` for init.
//! Parsing is pure so it is unit-tested here.

/// How the agent should boot, from `pyro.*` kernel parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootConfig {
    /// `pyro.mode=poweroff`: power off at once (the boot-time benchmark floor).
    pub power_off_only: bool,
    /// `pyro.root=`: the root block device.
    pub root: String,
    /// `pyro.rootfstype=`: the root filesystem type.
    pub rootfstype: String,
    /// `pyro.port=`: the name of the virtio-serial port to serve on.
    pub port: String,
    /// `pyro.debug=1`: log the time of each boot phase to the console.
    pub debug: bool,
    /// `pyro.net=1`: the VM has a network device; load its drivers at boot.
    pub network: bool,
    /// `pyro.seed=`: the seed disk's slot, mounted under /workspace when it
    /// holds a seed.
    pub seed: Option<String>,
}

impl Default for BootConfig {
    fn default() -> Self {
        Self {
            power_off_only: false,
            root: "/dev/vda".to_owned(),
            rootfstype: "ext4".to_owned(),
            port: pyro_protocol::AGENT_PORT_NAME.to_owned(),
            debug: false,
            network: false,
            seed: None,
        }
    }
}

impl BootConfig {
    /// Reads the `pyro.*` parameters out of a kernel command line; anything
    /// else is ignored, and missing or empty values keep their defaults.
    pub fn parse(cmdline: &str) -> Self {
        let mut config = Self::default();
        for (key, value) in split_params(cmdline) {
            let value = value.unwrap_or_default();
            match key.as_str() {
                "pyro.mode" => config.power_off_only = value == "poweroff",
                "pyro.root" if !value.is_empty() => config.root = value,
                "pyro.rootfstype" if !value.is_empty() => config.rootfstype = value,
                "pyro.port" if !value.is_empty() => config.port = value,
                "pyro.debug" => config.debug = !matches!(value.as_str(), "0" | "false" | "no"),
                "pyro.net" => config.network = value == "1",
                "pyro.seed" if !value.is_empty() => config.seed = Some(value),
                _ => {}
            }
        }
        config
    }
}

/// Splits a command line into `key[=value]` parameters the way the kernel
/// does: whitespace separates them, double quotes group spaces, and the quotes
/// themselves are dropped.
fn split_params(cmdline: &str) -> Vec<(String, Option<String>)> {
    let mut params = Vec::new();
    let mut current = String::new();
    let mut in_quotes = false;
    let mut started = false;
    for ch in cmdline.chars() {
        match ch {
            '"' => {
                in_quotes = !in_quotes;
                started = true;
            }
            c if c.is_whitespace() && !in_quotes => {
                if started {
                    params.push(split_key_value(&current));
                    current.clear();
                    started = false;
                }
            }
            c => {
                current.push(c);
                started = true;
            }
        }
    }
    if started {
        params.push(split_key_value(&current));
    }
    params
}

fn split_key_value(param: &str) -> (String, Option<String>) {
    match param.split_once('=') {
        Some((key, value)) => (key.to_owned(), Some(value.to_owned())),
        None => (param.to_owned(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_when_no_pyro_parameters() {
        let config = BootConfig::parse("console=ttyS0 quiet reboot=t panic=-1\n");
        assert_eq!(config, BootConfig::default());
        assert_eq!(config.root, "/dev/vda");
        assert_eq!(config.rootfstype, "ext4");
        assert_eq!(config.port, pyro_protocol::AGENT_PORT_NAME);
        assert!(!config.power_off_only);
    }

    #[test]
    fn reads_pyro_parameters() {
        let config = BootConfig::parse(
            "console=ttyS0 pyro.root=/dev/vdb pyro.rootfstype=xfs pyro.port=other.port pyro.debug \
             pyro.seed=/dev/vdc",
        );
        assert_eq!(config.seed.as_deref(), Some("/dev/vdc"));
        assert_eq!(config.root, "/dev/vdb");
        assert_eq!(config.rootfstype, "xfs");
        assert_eq!(config.port, "other.port");
        assert!(config.debug);
        assert!(!config.power_off_only);
    }

    #[test]
    fn power_off_mode() {
        assert!(BootConfig::parse("quiet pyro.mode=poweroff").power_off_only);
        assert!(!BootConfig::parse("quiet pyro.mode=serve").power_off_only);
        assert!(!BootConfig::parse("quiet pyro.debug=0").debug);
    }

    #[test]
    fn empty_values_keep_defaults_and_quotes_group_spaces() {
        let config = BootConfig::parse("pyro.root= pyro.port=\"a b\"");
        assert_eq!(config.root, "/dev/vda");
        assert_eq!(config.port, "a b");
    }

    #[test]
    fn splits_like_the_kernel() {
        assert_eq!(
            split_params("  a=1\tb \"c=x y\" d=\n"),
            vec![
                ("a".to_owned(), Some("1".to_owned())),
                ("b".to_owned(), None),
                ("c".to_owned(), Some("x y".to_owned())),
                ("d".to_owned(), Some(String::new())),
            ]
        );
    }
}
