//! `clutch run`'s settings end to end: each one set by flag, by environment variable
//! and by the settings file, precedence proven with `--print-config`; settings from the
//! file and the environment taking effect on a running cluster; a bad file refused
//! before anything is spawned; the README's table of every setting.

#[path = "../../tests/tests/common/procs.rs"]
mod common;
#[path = "support/master.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use support::{Master, CLUTCH};

/// `clutch run ARGS` with no settings variable but those in `envs`.
fn clutch_run(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = Command::new(CLUTCH);
    command.arg("run").args(args);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CLUTCH_") {
            command.env_remove(name);
        }
    }
    command
        .envs(envs.iter().copied())
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `--print-config --output json`, as key → (value, source object).
fn effective(args: &[&str], envs: &[(&str, &str)]) -> BTreeMap<String, Value> {
    let mut all = vec!["--print-config", "--output", "json"];
    all.extend(args);
    let out = clutch_run(&all, envs);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{all:?}: {stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    report["settings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["key"].as_str().unwrap().to_owned(), s.clone()))
        .collect()
}

/// A valid value of every setting for each source (file, environment, flag), three
/// different ones where the setting allows it. A setting not listed here is tested
/// with its default for all three (its source is still checked); one without a default
/// must be listed.
const SAMPLES: &[(&str, [&str; 3])] = &[
    ("workers", ["2", "3", "4"]),
    (
        "listen",
        ["127.0.0.1:5001", "[::1]:5002", "unix:/run/flag.sock"],
    ),
    ("backlog", ["10", "20", "30"]),
    ("unix-mode", ["600", "640", "660"]),
    ("name", ["from-file", "from-env", "from-flag"]),
    ("no-title", ["true", "true", "true"]),
    ("force-exit-timeout", ["1s", "2s", "3s"]),
    ("ready", ["notify", "exec", "5s"]),
    ("boot-timeout", ["30s", "40s", "50s"]),
    ("min-uptime", ["1s", "3s", "4s"]),
    ("rollout-batch", ["2", "3", "4"]),
    ("backoff-initial", ["200ms", "300ms", "400ms"]),
    ("backoff-factor", ["2", "2.5", "3"]),
    ("backoff-max", ["20s", "25s", "30s"]),
    ("crash-failures", ["6", "7", "8"]),
    ("crash-window", ["20s", "30s", "40s"]),
    ("hang-timeout", ["5s", "off", "15s"]),
    ("hang-signal", ["QUIT", "none", "USR1"]),
    ("hang-grace", ["3s", "4s", "5s"]),
    ("max-worker-memory", ["512M", "1G", "1536K"]),
    ("memory-check-interval", ["1s", "2s", "10s"]),
    ("max-worker-age", ["1h", "2h", "30m"]),
    ("max-worker-age-jitter", ["1m", "0s", "5m"]),
    (
        "control",
        ["/run/file.sock", "/run/env.sock", "/run/flag.sock"],
    ),
    (
        "metrics",
        ["127.0.0.1:9101", "[::1]:9102", "unix:/run/metrics.sock"],
    ),
    ("forward-signals", ["USR1", "USR2", "USR1,USR2"]),
    ("kill-mode", ["main", "tree", "main"]),
    ("log-format", ["json", "text", "json"]),
    ("worker-output", ["prefix", "json", "inherit"]),
    ("notify-sockets", ["directory", "abstract", "directory"]),
    // Looked up by --print-config (an unknown one is refused), so ones that exist.
    ("user", ["root", "0", "nobody"]),
    ("group", ["root", "0", "1"]),
    ("chdir", ["/", "/tmp", "/usr"]),
    ("umask", ["022", "027", "077"]),
    ("env", ["A=1", "B=2", "C=3"]),
];

/// Each setting by flag, by environment and by file: the flag beats the environment,
/// which beats the file, which beats the default — for every setting at once.
#[test]
fn every_setting_from_every_source_in_order_of_precedence() {
    let defaults = effective(&[], &[]);
    assert!(defaults.len() >= 24, "{defaults:?}");
    // (key, shape, env, [file, env, flag] values)
    let mut settings = Vec::new();
    for (key, setting) in &defaults {
        if key == "command" {
            continue; // the program: below
        }
        let samples = SAMPLES.iter().find(|(k, _)| k == key).map(|(_, s)| *s);
        let values: [String; 3] = match (samples, &setting["value"]) {
            (Some(samples), _) => samples.map(str::to_owned),
            (None, Value::String(default)) => std::array::from_fn(|_| default.clone()),
            (None, Value::Array(list)) if !list.is_empty() => {
                std::array::from_fn(|_| list[0].as_str().unwrap().to_owned())
            }
            (None, Value::Bool(_)) => std::array::from_fn(|_| "true".to_owned()),
            (None, other) => panic!("{key} has no default ({other}): add it to SAMPLES"),
        };
        let env = setting["env"].as_str().unwrap().to_owned();
        let kind = match &setting["value"] {
            Value::Array(_) => "list",
            Value::Bool(_) => "switch",
            _ => "single",
        };
        settings.push((key.clone(), kind, env, values));
    }

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("clutch.toml");
    let mut text = String::from("# every setting\n");
    let mut lines = BTreeMap::new();
    for (key, kind, _, values) in &settings {
        let value = match *kind {
            "list" => format!("[{:?}]", values[0]),
            "switch" => values[0].clone(),
            _ => format!("{:?}", values[0]),
        };
        text.push_str(&format!("{key} = {value}\n"));
        lines.insert(key.clone(), text.lines().count());
    }
    text.push_str("command = [\"./from-file\", \"--flag\"]\n");
    std::fs::write(&file, &text).unwrap();
    let config = file.display().to_string();
    let envs: Vec<(String, String)> = settings
        .iter()
        .map(|(_, kind, env, values)| {
            let value = if *kind == "switch" { "1" } else { &values[1] };
            (env.clone(), value.to_owned())
        })
        .collect();
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (&**k, &**v)).collect();
    let mut flags: Vec<String> = vec!["--config".into(), config.clone()];
    for (key, kind, _, values) in &settings {
        flags.push(match *kind {
            "switch" => format!("--{key}"),
            _ => format!("--{key}={}", values[2]),
        });
    }
    flags.extend(["--".into(), "./from-flag".into()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();

    let from_file = effective(&["--config", &config], &[]);
    let from_env = effective(&["--config", &config], &envs);
    let from_flag = effective(&flags, &envs);
    for (key, kind, env, values) in &settings {
        let shown = |report: &BTreeMap<String, Value>| -> String {
            match &report[key]["value"] {
                Value::Array(list) => list[0].as_str().unwrap().to_owned(),
                Value::Bool(b) => b.to_string(),
                Value::String(s) => s.clone(),
                other => panic!("{key}: {other}"),
            }
        };
        let (file_value, env_value, flag_value) = match *kind {
            "switch" => ("true", "true", "true"),
            _ => (&*values[0], &*values[1], &*values[2]),
        };
        assert_eq!(shown(&from_file), file_value, "{key} from the file");
        assert_eq!(from_file[key]["source"], "file", "{key}");
        assert_eq!(from_file[key]["source_file"], config.as_str(), "{key}");
        assert_eq!(from_file[key]["source_line"], lines[key], "{key}");
        assert_eq!(shown(&from_env), env_value, "{key} from {env}");
        assert_eq!(from_env[key]["source"], "env", "{key}");
        assert_eq!(from_env[key]["source_env"], env.as_str(), "{key}");
        assert_eq!(shown(&from_flag), flag_value, "{key} from its flag");
        assert_eq!(from_flag[key]["source"], "flag", "{key}");
        assert_eq!(defaults[key]["source"], "default", "{key}");
    }
    assert_eq!(from_file["command"]["value"][0], "./from-file");
    assert_eq!(from_file["command"]["source"], "file");
    assert_eq!(
        from_flag["command"]["value"],
        serde_json::json!(["./from-flag"])
    );
    assert_eq!(from_flag["command"]["source"], "flag");
    assert_eq!(defaults["command"]["value"], serde_json::json!([]));
}

/// The text form names each source as the README says, and `CLUTCH_CONFIG` names the
/// file when `--config` does not.
#[test]
fn print_config_text_names_each_source() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("clutch.toml");
    std::fs::write(&file, "# a comment\nworkers = 3\nready = \"notify\"\n").unwrap();
    let config = file.display().to_string();
    let out = clutch_run(
        &["--print-config", "--min-uptime", "5s"],
        &[("CLUTCH_CONFIG", &config), ("CLUTCH_READY", "exec")],
    );
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no {key} in {text}"))
            .to_owned()
    };
    assert!(
        line("workers").ends_with(&format!("# file {config}:2")),
        "{text}"
    );
    assert!(line("ready").contains("\"exec\""), "{text}");
    assert!(line("ready").ends_with("# env CLUTCH_READY"), "{text}");
    assert!(line("min-uptime").ends_with("# flag"), "{text}");
    assert!(line("boot-timeout").ends_with("# default"), "{text}");
    assert!(
        text.contains(&format!("# settings file: {config}")),
        "{text}"
    );
}

/// `--print-config` starts nothing: no worker, no control socket.
#[test]
fn print_config_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("spawned");
    let control = dir.path().join("ctl.sock");
    let touch = format!("touch {}", marker.display());
    let control_arg = control.display().to_string();
    let out = clutch_run(
        &[
            "--print-config",
            "--control",
            &control_arg,
            "--",
            "sh",
            "-c",
            &touch,
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(!marker.exists() && !control.exists());
    // Settings `clutch run` would refuse together: shown all the same, then refused.
    let out = clutch_run(
        &["--print-config", "--ready", "90s", "--", "sh", "-c", &touch],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ready = \"90s\""), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim(),
        "clutch: invalid configuration: --ready 90s must be shorter than the --boot-timeout 60s"
    );
    assert!(!marker.exists());
}

/// Each mistake in the file or the environment: one line naming the file, the line and
/// the key (or the variable), exit 2, and nothing spawned — even with a valid program
/// in the file.
#[test]
fn a_bad_file_or_variable_is_refused_before_anything_is_spawned() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("spawned");
    let program = format!(
        "command = [\"sh\", \"-c\", \"touch {}\"]\nready = \"exec\"\n",
        marker.display()
    );
    let file = dir.path().join("clutch.toml");
    let path = file.display().to_string();
    // (the file, the environment, the start of the one line on stderr)
    type Case<'a> = (String, Vec<(&'a str, &'a str)>, String);
    let cases: Vec<Case> = vec![
        (
            format!("{program}workers = 2\nwokers = 3\n"),
            vec![],
            format!("clutch: {path}:4: unknown key `wokers`"),
        ),
        (
            format!("{program}\n[server]\nworkers = 3\n"),
            vec![],
            format!("clutch: {path}:4: unknown key `server`"),
        ),
        (
            format!("{program}hang-timeout = \"soon\"\n"),
            vec![],
            format!("clutch: {path}:3: `hang-timeout`: invalid value \"soon\": invalid duration"),
        ),
        (
            format!("{program}listen = \"127.0.0.1:0\"\n"),
            vec![],
            format!("clutch: {path}:3: `listen`: expected a list"),
        ),
        (
            format!("{program}workers = \n"),
            vec![],
            format!("clutch: {path}:3: not valid TOML"),
        ),
        (
            program.clone(),
            vec![("CLUTCH_WORKERS", "0")],
            "clutch: CLUTCH_WORKERS: invalid value \"0\": 0 is not in 1..=4096".to_owned(),
        ),
        (
            program.clone(),
            vec![("CLUTCH_NO_TITLE", "maybe")],
            "clutch: CLUTCH_NO_TITLE: \"maybe\" is not true, false, 1 or 0".to_owned(),
        ),
        // Fine alone, refused together: named by their flags, as on the command line.
        (
            format!("{program}crash-window = \"0s\"\n"),
            vec![],
            format!(
                "clutch: invalid configuration: --crash-window: must be greater than zero \
                 (--crash-window: file {path}:3)"
            ),
        ),
    ];
    for (text, envs, needle) in cases {
        std::fs::write(&file, &text).unwrap();
        let out = clutch_run(&["--config", &path], &envs);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {stderr}");
        assert!(
            stderr.starts_with(&needle),
            "{text}: {stderr:?} should start with {needle:?}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr:?}");
        assert!(!marker.exists(), "{text}: spawned something");
    }
    let out = clutch_run(&["--config", "/no/such/clutch.toml", "--", "sh"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .starts_with("clutch: cannot read the settings file /no/such/clutch.toml: "));
}

/// A file that gives the program, the worker count and the listener runs that cluster;
/// the environment's worker count beats the file's; the variables are not passed on to
/// the workers.
#[test]
fn settings_from_the_file_and_the_environment_take_effect() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("http.sock");
    std::fs::write(
        dir.path().join("clutch.toml"),
        format!(
            "workers = 3\nready = \"exec\"\nlisten = [\"unix:{}\"]\ncommand = [\"/bin/sleep\", \"1000\"]\n",
            socket.display()
        ),
    )
    .unwrap();
    let config = dir.path().join("clutch.toml").into_os_string();
    let mut master = Master::spawn(
        dir,
        &["--config".into(), config.clone()],
        Stdio::null(),
        &[],
    );
    master.wait_until("three workers are ready", |m| {
        let status = m.status();
        status["ready"] == 3 && status["target"] == 3
    });
    assert!(socket.exists(), "the file's listener is bound");
    assert_eq!(master.stop(), 0);

    let dir = tempfile::tempdir().unwrap();
    let mut master = Master::spawn(
        dir,
        &["--config".into(), config],
        Stdio::null(),
        &[
            ("CLUTCH_WORKERS", "2"),
            ("CLUTCH_FORCE_EXIT_TIMEOUT", "20s"),
        ],
    );
    master.wait_until("two workers are ready", |m| {
        let status = m.status();
        status["ready"] == 2 && status["target"] == 2
    });
    for pid in master.worker_pids() {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        let environ = String::from_utf8_lossy(&environ);
        assert!(
            !environ.contains("CLUTCH_WORKERS=") && !environ.contains("CLUTCH_FORCE_EXIT"),
            "worker {pid} inherited the settings: {environ}"
        );
        assert!(environ.contains("CLUTCH_WORKER_ID="), "{environ}");
    }
    assert_eq!(master.stop(), 0);
}

/// The README's table documents every setting of `clutch run`: its flag, its variable
/// and its file key, in one row.
#[test]
fn the_readme_documents_every_setting() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let rows: Vec<&str> = readme.lines().filter(|l| l.starts_with("| `")).collect();
    for (key, setting) in effective(&[], &[]) {
        let row = match setting["flag"].as_str() {
            Some(flag) => rows.iter().find(|r| r.contains(&format!("`{flag}`"))),
            None => rows.iter().find(|r| r.starts_with("| `-- PROGRAM")),
        };
        let row = row.unwrap_or_else(|| panic!("the README's settings table has no row for {key}"));
        assert!(
            row.contains(&format!("`{key}`")),
            "{key}'s file key in: {row}"
        );
        if let Some(env) = setting["env"].as_str() {
            assert!(row.contains(&format!("`{env}`")), "{env} in: {row}");
        }
    }
    for meta in ["`--config ", "`CLUTCH_CONFIG`", "`--print-config`"] {
        assert!(readme.contains(meta), "{meta} in the README");
    }
}
