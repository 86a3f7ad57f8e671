//! The service-manager recipes in `docs/` are true: the doc shows the files as they are,
//! systemd accepts the unit files without a warning (`systemd-analyze verify`), and the
//! Kubernetes manifest validates (`kubernetes-validate --strict`), with the timeouts in
//! the right order.
//!
//! A missing tool skips its test with a printed reason, except under `CI=true`, where it
//! fails: `.ci/run` installs both.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use clutch_unix::duration::parse_duration;

const CLUTCH: &str = env!("CARGO_BIN_EXE_clutch");

fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Whether `tool` runs; if not, fails under CI and returns false (skip) elsewhere.
fn have(tool: &str, test: &str) -> bool {
    match Command::new(tool).arg("--version").output() {
        Ok(output) if output.status.success() => true,
        other => {
            let why = match other {
                Ok(output) => format!("`{tool} --version` failed: {output:?}"),
                Err(error) => format!("{tool} cannot be run: {error}"),
            };
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{test}: {why} (.ci/run installs it)"
            );
            // Straight to stderr, past the test harness's capture, so a skip is seen.
            let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
            false
        }
    }
}

/// The files the doc shows, and the language of their code blocks.
const RECIPES: [(&str, &str); 4] = [
    ("systemd/clutch-app.socket", "ini"),
    ("systemd/clutch-app.service", "ini"),
    ("systemd/clutch-app.service.d/notify-reload.conf", "ini"),
    ("kubernetes/deployment.yaml", "yaml"),
];

#[test]
fn the_doc_shows_the_recipe_files_as_they_are() {
    let doc = read(&docs().join("SERVICE-MANAGERS.md"));
    for (file, lang) in RECIPES {
        let content = read(&docs().join(file));
        assert!(
            doc.contains(&format!("```{lang}\n{content}```\n")),
            "docs/SERVICE-MANAGERS.md does not show docs/{file} as it is"
        );
    }
    // Every code block of the doc is one of the files: none can drift unchecked.
    let blocks = doc.matches("\n```ini\n").count() + doc.matches("\n```yaml\n").count();
    assert_eq!(blocks, RECIPES.len(), "code blocks in the doc");
}

/// `(key, value)` of every `Key=value` line of a unit file.
fn settings(unit: &str) -> Vec<(&str, &str)> {
    unit.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .collect()
}

fn setting<'a>(unit: &'a str, key: &str) -> &'a str {
    let values: Vec<&str> = settings(unit)
        .into_iter()
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(values.len(), 1, "{key}= in the unit: {values:?}");
    values[0]
}

/// The value after `flag` in a command line's words.
fn flag<'a>(words: &[&'a str], flag: &str) -> &'a str {
    let at = words
        .iter()
        .position(|w| *w == flag)
        .unwrap_or_else(|| panic!("no {flag} in {words:?}"));
    words
        .get(at + 1)
        .unwrap_or_else(|| panic!("{flag} has no value"))
}

fn duration(text: &str) -> Duration {
    parse_duration(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

#[test]
fn the_service_unit_stops_in_the_right_order() {
    let unit = read(&docs().join("systemd/clutch-app.service"));
    assert_eq!(setting(&unit, "Type"), "notify");
    assert_eq!(setting(&unit, "NotifyAccess"), "main");
    assert_eq!(setting(&unit, "KillMode"), "mixed");
    assert_eq!(setting(&unit, "Delegate"), "yes");
    let start: Vec<&str> = setting(&unit, "ExecStart").split_whitespace().collect();
    assert_eq!(&start[..2], ["/usr/local/bin/clutch", "run"]);
    let force = duration(flag(&start, "--force-exit-timeout"));
    let stop = duration(setting(&unit, "TimeoutStopSec"));
    assert!(
        stop > force,
        "TimeoutStopSec= ({stop:?}) must be longer than --force-exit-timeout ({force:?})"
    );
    let control = flag(&start, "--control");
    let reload: Vec<&str> = setting(&unit, "ExecReload").split_whitespace().collect();
    assert_eq!(
        reload,
        ["/usr/local/bin/clutch", "reload", "--control", control]
    );
    let runtime = setting(&unit, "RuntimeDirectory");
    assert!(
        control.starts_with(&format!("/run/{runtime}/")),
        "{control}"
    );
}

/// The systemd version `systemd-analyze --version` reports.
fn systemd_version() -> u32 {
    let output = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    text.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no version in {text:?}"))
}

/// Runs `systemd-analyze verify` on the units in `dir`; the lines it printed about them.
fn verify(dir: &Path, units: &[&str]) -> Vec<String> {
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .args(units.iter().map(|u| dir.join(u)))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // verify exits 0 even when it ignored settings: every line about our units counts.
    // (Lines about the host's own units are not the recipe's business; they are shown.)
    let (ours, others): (Vec<&str>, Vec<&str>) = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .partition(|l| l.contains("clutch-app") || l.contains(&*dir.to_string_lossy()));
    for line in others {
        println!("systemd-analyze (about another unit): {line}");
    }
    assert!(
        output.status.success() || !ours.is_empty(),
        "systemd-analyze verify failed: {text}"
    );
    ours.into_iter().map(str::to_owned).collect()
}

/// The units in a directory of their own, `ExecStart=`'s program being this build's
/// `clutch` (verify insists that it exists).
fn units_in_temp_dir(drop_in: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in ["clutch-app.socket", "clutch-app.service"] {
        let unit = read(&docs().join("systemd").join(name));
        assert!(name.ends_with(".socket") || unit.contains("/usr/local/bin/clutch "));
        std::fs::write(
            dir.path().join(name),
            unit.replace("/usr/local/bin/clutch ", &format!("{CLUTCH} ")),
        )
        .unwrap();
    }
    if drop_in {
        let conf = "clutch-app.service.d/notify-reload.conf";
        std::fs::create_dir(dir.path().join("clutch-app.service.d")).unwrap();
        std::fs::copy(docs().join("systemd").join(conf), dir.path().join(conf)).unwrap();
    }
    dir
}

#[test]
fn systemd_accepts_the_units_without_a_warning() {
    if !have(
        "systemd-analyze",
        "systemd_accepts_the_units_without_a_warning",
    ) {
        return;
    }
    let dir = units_in_temp_dir(false);
    let lines = verify(dir.path(), &["clutch-app.service", "clutch-app.socket"]);
    assert!(lines.is_empty(), "systemd-analyze verify: {lines:#?}");

    // The check would see a comment after a value (the old recipe's mistake).
    let unit = read(&dir.path().join("clutch-app.service"));
    std::fs::write(
        dir.path().join("clutch-app.service"),
        unit.replace("KillMode=mixed", "KillMode=mixed  # SIGTERM to clutch only"),
    )
    .unwrap();
    let lines = verify(dir.path(), &["clutch-app.service", "clutch-app.socket"]);
    assert!(
        lines.iter().any(|l| l.contains("kill mode")),
        "a broken unit passed: {lines:#?}"
    );
}

#[test]
fn systemd_253_accepts_the_notify_reload_drop_in() {
    if !have(
        "systemd-analyze",
        "systemd_253_accepts_the_notify_reload_drop_in",
    ) {
        return;
    }
    let dir = units_in_temp_dir(true);
    let lines = verify(dir.path(), &["clutch-app.service", "clutch-app.socket"]);
    if systemd_version() >= 253 {
        assert!(lines.is_empty(), "systemd-analyze verify: {lines:#?}");
    } else {
        // systemd 252 knows every line of it but the one the doc says needs 253 (so the
        // drop-in is read, and the rest of it is right).
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(
            lines[0].contains("Failed to parse service type, ignoring: notify-reload"),
            "{lines:#?}"
        );
    }
}

#[test]
fn the_kubernetes_manifest_validates_and_its_timeouts_fit() {
    let path = docs().join("kubernetes/deployment.yaml");
    let manifest = read(&path);

    // Without a YAML parser: the lines that matter, each once.
    let value = |key: &str| -> String {
        let found: Vec<&str> = manifest
            .lines()
            .filter_map(|l| l.trim().strip_prefix(key))
            .collect();
        assert_eq!(found.len(), 1, "{key} in the manifest: {found:?}");
        found[0].trim().trim_matches('"').to_owned()
    };
    let words: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- "))
        .collect();
    assert_eq!(
        words
            .iter()
            .filter(|w| **w == "/usr/local/bin/clutch")
            .count(),
        2,
        "clutch is the entrypoint and the liveness probe"
    );
    let grace = Duration::from_secs(value("terminationGracePeriodSeconds:").parse().unwrap());
    let force = duration(flag(&words, "--force-exit-timeout"));
    let pre_stop = Duration::from_secs(value("seconds:").parse().unwrap());
    assert!(
        pre_stop + force < grace,
        "preStop ({pre_stop:?}) + --force-exit-timeout ({force:?}) must be shorter than \
         terminationGracePeriodSeconds ({grace:?})"
    );
    let control = flag(&words, "--control");
    assert_eq!(
        words.iter().filter(|w| **w == control).count(),
        2,
        "the probe asks the master's control socket"
    );
    assert!(control.starts_with(&format!("{}/", value("mountPath:"))));

    if !have(
        "kubernetes-validate",
        "the_kubernetes_manifest_validates_and_its_timeouts_fit",
    ) {
        return;
    }
    let output = Command::new("kubernetes-validate")
        .arg("--strict")
        .arg(&path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "kubernetes-validate: {text}");
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        !lines.is_empty()
            && lines
                .iter()
                .all(|l| l.starts_with("INFO ") && l.contains("passed")),
        "kubernetes-validate said more than that it passed: {text}"
    );
}
