//! Unit tests of the params module.

use super::*;

#[test]
fn idle_timeouts_read_as_durations_within_bounds() {
    let secs = |text| idle_timeout(text).map(|t| t.map(|d| d.as_secs()));
    assert_eq!(secs("off"), Ok(None));
    assert_eq!(secs("0"), Ok(None));
    assert_eq!(secs("90"), Ok(Some(90)));
    assert_eq!(secs("15m"), Ok(Some(900)));
    assert_eq!(secs("1h30m"), Ok(Some(5400)));
    assert_eq!(secs("2d"), Ok(Some(172_800)));
    for bad in ["", "m", "5x", "1.5h", "-3s", "1h 2m"] {
        assert!(
            matches!(idle_timeout(bad), Err(InvalidRequest::BadDuration { .. })),
            "{bad}"
        );
    }
    for out in ["4s", "31d"] {
        assert!(
            matches!(
                idle_timeout(out),
                Err(InvalidRequest::IdleTimeoutOutOfRange { .. })
            ),
            "{out}"
        );
    }
    assert_eq!(describe_duration(Duration::from_secs(5400)), "1h30m");
    assert_eq!(describe_duration(Duration::from_secs(45)), "45s");
}

#[test]
fn sizes_have_a_floor_and_a_ceiling() {
    assert_eq!(validate_size(DEFAULT_CPUS, DEFAULT_MEMORY_MIB), Ok(()));
    assert_eq!(
        validate_size(1, 64),
        Err(InvalidRequest::MemoryTooSmall { mib: 64 })
    );
    for cpus in [0, MAX_CPUS + 1] {
        assert_eq!(
            validate_size(cpus, 512),
            Err(InvalidRequest::CpusOutOfRange { cpus })
        );
    }
}

#[test]
fn a_command_is_a_shell_line_or_an_argv() {
    assert_eq!(
        command_argv(Some("ls | wc -l".into()), None).unwrap(),
        ["sh", "-c", "ls | wc -l"]
    );
    assert_eq!(
        command_argv(None, Some(vec!["ls".into(), "-l".into()])).unwrap(),
        ["ls", "-l"]
    );
    assert_eq!(
        command_argv(Some("x".into()), Some(vec!["x".into()])),
        Err(InvalidRequest::TwoCommandForms)
    );
    for (line, argv) in [(None, None), (Some(" ".into()), None), (None, Some(vec![]))] {
        assert_eq!(command_argv(line, argv), Err(InvalidRequest::NoCommand));
    }
}

#[test]
fn a_half_given_shell_size_takes_the_default_for_the_rest() {
    assert_eq!(shell_size(None, None), (DEFAULT_ROWS, DEFAULT_COLS));
    assert_eq!(shell_size(Some(10), None), (10, DEFAULT_COLS));
    assert_eq!(shell_size(None, Some(80)), (DEFAULT_ROWS, 80));
}

#[test]
fn shell_reads_wait_within_bounds() {
    let default = ShellReadOptions::default();
    assert_eq!(default.wait_idle, Duration::from_millis(500));
    assert_eq!(default.timeout, Duration::from_secs(15));
    let extreme = ShellReadOptions::new(
        Some(Duration::from_secs(999)),
        Some(Duration::from_secs(999)),
        true,
    );
    assert_eq!(
        (extreme.wait_idle, extreme.timeout),
        (MAX_WAIT_IDLE, MAX_READ_TIMEOUT)
    );
    let zero = ShellReadOptions::new(None, Some(Duration::ZERO), false);
    assert_eq!(zero.timeout, MIN_READ_TIMEOUT);
}

#[test]
fn one_readiness_check_at_most() {
    assert_eq!(readiness(None, None, None, None), Ok(None));
    assert_eq!(
        readiness(None, Some(80), None, None),
        Ok(Some(Readiness::Tcp { port: 80 }))
    );
    assert_eq!(
        readiness(Some("f".into()), Some(80), None, None),
        Err(InvalidRequest::TwoReadinessChecks { count: 2 })
    );
}

#[test]
fn logs_read_from_an_offset_or_the_tail() {
    assert_eq!(log_range(None, None), LogRange::Tail(50));
    assert_eq!(log_range(Some(5), None), LogRange::Tail(5));
    assert_eq!(log_range(Some(5), Some(9)), LogRange::Since(9));
}

#[test]
fn signals_by_name_or_number() {
    assert_eq!(parse_signal("INT").unwrap(), libc::SIGINT);
    assert_eq!(parse_signal("sigterm").unwrap(), libc::SIGTERM);
    assert_eq!(parse_signal("9").unwrap(), 9);
    assert!(parse_signal("NOPE").is_err());
    assert!(parse_signal("0").is_err());
}

#[test]
fn input_is_text_then_line_then_keys() {
    let input = ShellInput::new(Some("a"), Some("b"), &["ctrl-c".into()]).unwrap();
    assert_eq!(input.data, "ab\r");
    assert_eq!(input.keys, ["ctrl-c"]);
    assert!(ShellInput::new(None, None, &[]).is_err());
    assert!(ShellInput::new(None, None, &["no-such-key".into()]).is_err());
}

#[test]
fn a_call_names_one_seed_or_takes_the_default() {
    let default = Seed::Path("/proj".into());
    assert_eq!(
        call_seed(None, None, None, Some(&default)),
        Ok(Some(default.clone()))
    );
    assert_eq!(
        call_seed(Some("a".into()), None, None, Some(&default)),
        Ok(Some(Seed::Path("a".into())))
    );
    assert_eq!(
        call_seed(None, Some("u".into()), Some("r".into()), None),
        Ok(Some(Seed::Repo {
            url: "u".into(),
            reference: Some("r".into())
        }))
    );
    assert_eq!(
        call_seed(Some("a".into()), Some("u".into()), None, None),
        Err(InvalidRequest::TwoSeeds)
    );
    assert_eq!(
        call_seed(None, None, Some("r".into()), None),
        Err(InvalidRequest::RefWithoutRepo)
    );
}

#[test]
fn project_seed_prefers_flags_then_the_git_root() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b");
    std::fs::create_dir_all(&nested).unwrap();
    std::fs::create_dir_all(dir.path().join(".git")).unwrap();
    assert_eq!(
        project_seed(None, None, None, &nested, None),
        Ok(Some(Seed::Path(dir.path().to_path_buf())))
    );
    assert_eq!(
        project_seed(Some("/x".into()), None, None, &nested, None),
        Ok(Some(Seed::Path("/x".into())))
    );
    assert!(matches!(
        project_seed(None, Some("u".into()), Some("r".into()), &nested, None),
        Ok(Some(Seed::Repo { .. }))
    ));
    assert_eq!(
        project_seed(None, None, None, Path::new("/"), None),
        Ok(None)
    );
    // A checkout at the home directory is too wide to be the project.
    assert!(matches!(
        project_seed(None, None, None, &nested, Some(dir.path())),
        Err(ProjectSkipped::TooWide { .. })
    ));
}

#[test]
fn ready_timeout_defaults_and_saturates() {
    assert_eq!(ready_timeout_ms(None), 60_000);
    assert_eq!(ready_timeout_ms(Some(5)), 5_000);
    assert_eq!(ready_timeout_ms(Some(u64::MAX / 10)), u64::MAX);
}

#[test]
fn excludes_need_a_seed_and_stay_bounded() {
    let seed = Seed::Path("/src".into());
    assert!(check_excludes(None, &[]).is_ok());
    assert!(check_excludes(Some(&seed), &["target/".into()]).is_ok());
    let err = check_excludes(None, &["target/".into()]).unwrap_err();
    assert!(err.to_string().contains("give a seed path"), "{err}");
    let many = vec!["x".to_string(); MAX_EXCLUDES + 1];
    assert!(check_excludes(Some(&seed), &many).is_err());
}

#[test]
fn host_disk_ceilings_read_binary_units_and_stay_in_range() {
    assert_eq!(max_host_disk("16G"), Ok(16 << 30));
    assert_eq!(max_host_disk("16GiB"), Ok(16 << 30));
    assert_eq!(max_host_disk(" 16 GB "), Ok(16 << 30));
    assert_eq!(max_host_disk("512M"), Ok(512 << 20));
    assert_eq!(max_host_disk("1.5T"), Ok(3 << 39));
    assert_eq!(max_host_disk("20"), Ok(20 << 30));
    for bad in ["", "G", "16X", "-1G", "1.2.3G", "16 G B"] {
        assert!(
            matches!(max_host_disk(bad), Err(InvalidRequest::BadSize { .. })),
            "{bad}"
        );
    }
    assert_eq!(disk_size("20G"), Ok(20 << 30));
    assert_eq!(disk_size("10.3G").map(|b| b % (1 << 20)), Ok(0));
    assert!(matches!(
        disk_size("3T"),
        Err(InvalidRequest::SizeOutOfRange { .. })
    ));
    assert!(matches!(
        disk_size("x"),
        Err(InvalidRequest::BadSize { .. })
    ));
    for out in ["100M", "0", "65T"] {
        assert!(
            matches!(
                max_host_disk(out),
                Err(InvalidRequest::SizeOutOfRange { .. })
            ),
            "{out}"
        );
    }
}
