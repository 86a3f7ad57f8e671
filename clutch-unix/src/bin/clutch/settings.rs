//! Where `clutch run`'s settings come from: the command line, the environment, a TOML
//! file, or the flag's default — in that order of precedence.
//!
//! Nothing here names a flag. Every argument of the `run` command gets, from its long
//! name (`--force-exit-timeout`):
//!
//! - an environment variable, `CLUTCH_` + the name upper-cased, `-` → `_`
//!   (`CLUTCH_FORCE_EXIT_TIMEOUT`);
//! - a key in the file, the long name itself (`force-exit-timeout = "10s"`).
//!
//! How a value is written follows from the argument's clap action: a switch
//! (`SetTrue`, `--no-title`) is a TOML boolean, or `true`/`false`/`1`/`0` in the
//! environment; a repeatable flag (`Append`, `--listen`) is a TOML list of strings, or
//! a comma-separated list in the environment (`\,` is a comma inside an item, `\\` a
//! backslash); any other flag is one TOML string or number, or the variable as it is.
//! A positional argument (the program, `command`) has a file key (its id) and no
//! variable. The meta flags (`--config`, `--print-config`, `--output`) have neither,
//! except `CLUTCH_CONFIG`.
//!
//! Every value from the environment or the file is checked with the argument's own
//! clap value parser, then handed to clap as that argument's default (with
//! `required(false)`): clap's parse then lets a flag on the command line win, and
//! [`Layer::report`] tells the sources apart with [`ArgMatches::value_source`] and the
//! record of which defaults this layer set.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};

/// The variable that names the settings file when `--config` does not.
pub(crate) const CONFIG_ENV: &str = "CLUTCH_CONFIG";

/// The flag that names the settings file.
const CONFIG_FLAG: &str = "config";

/// Arguments that steer the settings layer itself: no variable, no file key
/// (`--config` has `CLUTCH_CONFIG`, read by [`Layer::load`] itself).
const META: [&str; 3] = [CONFIG_FLAG, "print-config", "output"];

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// The command line.
    Flag,
    /// This environment variable.
    Env(String),
    /// This file, at this line (1-based).
    File { path: PathBuf, line: usize },
    /// The flag's default (or no value at all).
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flag => f.write_str("flag"),
            Self::Env(name) => write!(f, "env {name}"),
            Self::File { path, line } => write!(f, "file {}:{line}", path.display()),
            Self::Default => f.write_str("default"),
        }
    }
}

/// How an argument's values are written in the environment and in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// A flag without a value: `true`/`false`.
    Switch,
    /// Repeatable, or several values: a list.
    List,
    /// One value.
    Single,
}

/// The settings layer's view of one argument of `clutch run`.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    /// clap's id (what `mut_arg` and `ArgMatches` take).
    pub(crate) id: String,
    /// The file key: the long flag name, or a positional's id.
    pub(crate) key: String,
    /// `--long`, if it is a flag.
    pub(crate) flag: Option<String>,
    /// The environment variable, if it has one (flags only).
    pub(crate) env: Option<String>,
    pub(crate) shape: Shape,
}

/// `CLUTCH_` + the long name upper-cased, `-` → `_`.
pub(crate) fn env_name(long: &str) -> String {
    format!("CLUTCH_{}", long.to_ascii_uppercase().replace('-', "_"))
}

/// The arguments of `cmd` that take part, in their order, with their names.
///
/// # Panics
///
/// On an argument whose action the layer cannot express (a counter, say): a unit test
/// runs this on `clutch run`, so such a flag fails the tests, not a user.
pub(crate) fn specs(cmd: &Command) -> Vec<Spec> {
    let mut built = cmd.clone();
    built.build();
    let mut specs = Vec::new();
    for arg in built.get_arguments() {
        let id = arg.get_id().as_str();
        let long = arg.get_long();
        if id == "help" || id == "version" || long.is_some_and(|l| META.contains(&l)) {
            continue;
        }
        let shape = shape(arg).unwrap_or_else(|| {
            panic!(
                "argument {id}: its action {:?} has no environment or file form",
                arg.get_action()
            )
        });
        specs.push(Spec {
            id: id.to_owned(),
            key: long.unwrap_or(id).to_owned(),
            flag: long.map(|l| format!("--{l}")),
            env: long.map(env_name),
            shape,
        });
    }
    specs
}

/// Every variable the layer reads for `cmd`: each argument's and `CLUTCH_CONFIG`.
pub(crate) fn variables(cmd: &Command) -> Vec<String> {
    specs(cmd)
        .into_iter()
        .filter_map(|spec| spec.env)
        .chain([CONFIG_ENV.to_owned()])
        .collect()
}

fn shape(arg: &Arg) -> Option<Shape> {
    match arg.get_action() {
        ArgAction::SetTrue => Some(Shape::Switch),
        ArgAction::Append => Some(Shape::List),
        ArgAction::Set if arg.get_num_args().is_some_and(|n| n.max_values() > 1) => {
            Some(Shape::List)
        }
        ArgAction::Set => Some(Shape::Single),
        _ => None,
    }
}

/// Why the environment or the file could not be used. Each is one line that names the
/// variable, or the file, line and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SettingsError {
    /// The file could not be read.
    Read { path: PathBuf, error: String },
    /// The file is not TOML.
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// A key that is no setting.
    UnknownKey {
        path: PathBuf,
        line: usize,
        key: String,
    },
    /// A value of the wrong type or that the flag refuses, in the file.
    FileValue {
        path: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
    /// A value that the flag refuses, in the environment.
    EnvValue { name: String, message: String },
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { path, error } => {
                write!(
                    f,
                    "cannot read the settings file {}: {error}",
                    path.display()
                )
            }
            Self::Syntax {
                path,
                line,
                message,
            } => write!(f, "{}:{line}: not valid TOML: {message}", path.display()),
            Self::UnknownKey { path, line, key } => write!(
                f,
                "{}:{line}: unknown key `{key}` (a key is a long flag of `clutch run`, \
                 such as `workers`, or `command`)",
                path.display()
            ),
            Self::FileValue {
                path,
                line,
                key,
                message,
            } => write!(f, "{}:{line}: `{key}`: {message}", path.display()),
            Self::EnvValue { name, message } => write!(f, "{name}: {message}"),
        }
    }
}

/// The values the environment and the file give, each already checked by its
/// argument's value parser.
#[derive(Debug, Default)]
pub(crate) struct Layer {
    /// The settings file, if one was named.
    pub(crate) file: Option<PathBuf>,
    /// By clap id: the values to inject and where they came from.
    values: BTreeMap<String, (Vec<String>, Source)>,
}

impl Layer {
    /// Reads the settings file (named by `--config` in `args`, the `run` command's
    /// arguments, or by `CLUTCH_CONFIG`) and the environment, through `env` (the
    /// process's, in `main`), for the arguments of `cmd`.
    pub(crate) fn load(
        cmd: &Command,
        args: &[OsString],
        env: &dyn Fn(&str) -> Option<OsString>,
    ) -> Result<Self, SettingsError> {
        let specs = specs(cmd);
        let mut built = cmd.clone();
        built.build();
        let mut layer = Self::default();
        let file = config_flag(args)
            .or_else(|| env(CONFIG_ENV).filter(|v| !v.is_empty()).map(PathBuf::from));
        if let Some(path) = file {
            layer.read_file(&built, &specs, &path)?;
            layer.file = Some(path);
        }
        for spec in &specs {
            let Some(name) = &spec.env else { continue };
            let Some(raw) = env(name).filter(|v| !v.is_empty()) else {
                continue;
            };
            let bad = |message: String| SettingsError::EnvValue {
                name: name.clone(),
                message,
            };
            let text = raw
                .into_string()
                .map_err(|raw| bad(format!("{raw:?} is not UTF-8")))?;
            let values = match spec.shape {
                Shape::Switch => vec![env_bool(&text).map_err(bad)?],
                Shape::List => split_list(&text).map_err(bad)?,
                Shape::Single => vec![text],
            };
            check(&built, &spec.id, &values).map_err(bad)?;
            layer
                .values
                .insert(spec.id.clone(), (values, Source::Env(name.clone())));
        }
        Ok(layer)
    }

    fn read_file(
        &mut self,
        cmd: &Command,
        specs: &[Spec],
        path: &Path,
    ) -> Result<(), SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|e| SettingsError::Read {
            path: path.to_owned(),
            error: e.to_string(),
        })?;
        let table = toml::de::DeTable::parse(&text).map_err(|e| SettingsError::Syntax {
            path: path.to_owned(),
            line: line_of(&text, e.span().map_or(0, |s| s.start)),
            message: e.message().lines().next().unwrap_or("").to_owned(),
        })?;
        // In the file's order, so that the first mistake is the one reported.
        let mut entries: Vec<_> = table.get_ref().iter().collect();
        entries.sort_by_key(|(key, _)| key.span().start);
        for (key, value) in entries {
            let name: &str = key.get_ref();
            let line = line_of(&text, key.span().start);
            let Some(spec) = specs.iter().find(|s| s.key == name) else {
                return Err(SettingsError::UnknownKey {
                    path: path.to_owned(),
                    line,
                    key: name.to_owned(),
                });
            };
            let bad = |message: String| SettingsError::FileValue {
                path: path.to_owned(),
                line,
                key: name.to_owned(),
                message,
            };
            let values = toml_values(value.get_ref(), spec.shape).map_err(bad)?;
            check(cmd, &spec.id, &values).map_err(bad)?;
            self.values.insert(
                spec.id.clone(),
                (
                    values,
                    Source::File {
                        path: path.to_owned(),
                        line,
                    },
                ),
            );
        }
        Ok(())
    }

    /// `cmd` with this layer's values as its arguments' defaults.
    pub(crate) fn apply(&self, mut cmd: Command) -> Command {
        for (id, (values, _)) in &self.values {
            let values = values.clone();
            cmd = cmd.mut_arg(id.as_str(), move |arg| {
                arg.required(false).default_values(values)
            });
        }
        cmd
    }

    /// `cmd` with each argument's help naming its variable (`[env: CLUTCH_WORKERS]`), as
    /// clap's own `env` would.
    pub(crate) fn document(mut cmd: Command) -> Command {
        for spec in specs(&cmd) {
            let Some(env) = spec.env else { continue };
            cmd = cmd.mut_arg(spec.id.as_str(), |arg| {
                let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                let long = arg.get_long_help().map(ToString::to_string);
                let arg = arg.help(format!("{help} [env: {env}]"));
                match long {
                    Some(long) => arg.long_help(format!("{long}\n[env: {env}]")),
                    None => arg,
                }
            });
        }
        cmd
    }

    /// Where the value of argument `id` came from, after `matches` was parsed by
    /// [`apply`](Self::apply)'s command.
    pub(crate) fn source(&self, matches: &ArgMatches, id: &str) -> Source {
        match matches.value_source(id) {
            Some(ValueSource::CommandLine) => Source::Flag,
            Some(ValueSource::DefaultValue) => self
                .values
                .get(id)
                .map_or(Source::Default, |(_, source)| source.clone()),
            // Not ours (clap's own `env`, unused), or nothing at all.
            _ => Source::Default,
        }
    }

    /// Every setting of `cmd` with its effective value (as text, as it was written) and
    /// its source.
    pub(crate) fn report(&self, cmd: &Command, matches: &ArgMatches) -> Vec<Effective> {
        specs(cmd)
            .into_iter()
            .map(|spec| {
                let values = matches
                    .get_raw(&spec.id)
                    .map(|raw| {
                        raw.map(|v| v.to_string_lossy().into_owned())
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default();
                let source = self.source(matches, &spec.id);
                Effective {
                    spec,
                    values,
                    source,
                }
            })
            .collect()
    }
}

/// `message`, a refusal that names flags (`--ready 90s must be shorter than the
/// --boot-timeout 60s`), with where each named flag's value came from when that was
/// not the command line: ` (--ready: file /etc/clutch.toml:3)`.
pub(crate) fn with_sources(message: &str, effective: &[Effective]) -> String {
    let named = |flag: &str| {
        message.match_indices(flag).any(|(at, _)| {
            !message[at + flag.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-')
        })
    };
    let sources: Vec<String> = effective
        .iter()
        .filter(|e| matches!(e.source, Source::Env(_) | Source::File { .. }))
        .filter_map(|e| {
            let flag = e.spec.flag.as_deref()?;
            named(flag).then(|| format!("{flag}: {}", e.source))
        })
        .collect();
    if sources.is_empty() {
        message.to_owned()
    } else {
        format!("{message} ({})", sources.join("; "))
    }
}

/// One line of `--print-config`.
#[derive(Debug, Clone)]
pub(crate) struct Effective {
    pub(crate) spec: Spec,
    /// Empty when the setting has no value (no default: its meaning is in `--help`).
    pub(crate) values: Vec<String>,
    pub(crate) source: Source,
}

impl Effective {
    /// The value as TOML (a line of a settings file), or `None` when unset.
    pub(crate) fn toml(&self) -> Option<String> {
        // Numbers bare (`workers = 4`), the rest as TOML strings (JSON's escapes are
        // TOML's); the file takes either for any setting.
        // (Not one with a leading zero, `027` or `0660`: TOML refuses those as numbers.)
        let quote = |v: &String| {
            let leading_zero = v.len() > 1 && v.starts_with('0') && !v.starts_with("0.");
            let number = !v.is_empty()
                && v.chars().all(|c| c.is_ascii_digit() || c == '.')
                && v.parse::<f64>().is_ok()
                && !v.starts_with('.')
                && !v.ends_with('.')
                && !leading_zero;
            if number {
                v.clone()
            } else {
                serde_json::Value::from(v.as_str()).to_string()
            }
        };
        match self.spec.shape {
            Shape::Switch => self.values.first().cloned(),
            Shape::List => Some(format!(
                "[{}]",
                self.values.iter().map(quote).collect::<Vec<_>>().join(", ")
            )),
            Shape::Single => self.values.first().map(quote),
        }
    }

    /// The value and source as JSON.
    pub(crate) fn json(&self) -> serde_json::Value {
        let value = match self.spec.shape {
            Shape::Switch => self
                .values
                .first()
                .map_or(serde_json::Value::Null, |v| (v == "true").into()),
            Shape::List => self.values.clone().into(),
            Shape::Single => self
                .values
                .first()
                .map_or(serde_json::Value::Null, |v| v.as_str().into()),
        };
        let mut object = serde_json::json!({
            "key": self.spec.key,
            "flag": self.spec.flag,
            "env": self.spec.env,
            "value": value,
        });
        match &self.source {
            Source::Flag => object["source"] = "flag".into(),
            Source::Env(name) => {
                object["source"] = "env".into();
                object["source_env"] = name.as_str().into();
            }
            Source::File { path, line } => {
                object["source"] = "file".into();
                object["source_file"] = path.display().to_string().into();
                object["source_line"] = (*line).into();
            }
            Source::Default => object["source"] = "default".into(),
        }
        object
    }
}

/// `--config PATH` or `--config=PATH` among the `run` command's arguments (before `--`).
fn config_flag(args: &[OsString]) -> Option<PathBuf> {
    let flag = format!("--{CONFIG_FLAG}");
    let with_equals = format!("--{CONFIG_FLAG}=");
    let mut args = args.iter().take_while(|a| *a != "--");
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        if text == flag {
            return args.next().map(PathBuf::from);
        }
        if let Some(path) = text.strip_prefix(&with_equals) {
            return Some(PathBuf::from(path));
        }
    }
    None
}

/// A switch's value in the environment.
fn env_bool(text: &str) -> Result<String, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Ok("true".to_owned()),
        "false" | "0" => Ok("false".to_owned()),
        _ => Err(format!("{text:?} is not true, false, 1 or 0")),
    }
}

/// A repeatable flag's variable: items separated by commas, each trimmed; `\,` is a
/// comma inside an item and `\\` a backslash (any other `\` is itself).
pub(crate) fn split_list(text: &str) -> Result<Vec<String>, String> {
    let mut items = vec![String::new()];
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let item = items.last_mut().expect("never empty");
        match c {
            '\\' if matches!(chars.peek(), Some(',' | '\\')) => {
                item.push(chars.next().expect("peeked"));
            }
            ',' => items.push(String::new()),
            c => item.push(c),
        }
    }
    let items: Vec<String> = items.iter().map(|i| i.trim().to_owned()).collect();
    if items.iter().any(String::is_empty) {
        return Err(format!("{text:?} has an empty item"));
    }
    Ok(items)
}

/// A file value as the argument's text values.
fn toml_values(value: &toml::de::DeValue<'_>, shape: Shape) -> Result<Vec<String>, String> {
    use toml::de::DeValue;
    match (shape, value) {
        (Shape::Switch, DeValue::Boolean(b)) => Ok(vec![b.to_string()]),
        (Shape::Switch, other) => Err(format!("expected true or false, not {}", kind(other))),
        (Shape::List, DeValue::Array(items)) => items
            .iter()
            .map(|item| {
                scalar(item.get_ref()).ok_or_else(|| {
                    format!(
                        "expected a list of strings, not a list with {}",
                        kind(item.get_ref())
                    )
                })
            })
            .collect(),
        (Shape::List, other) => Err(format!(
            "expected a list such as [\"a\", \"b\"], not {}",
            kind(other)
        )),
        (Shape::Single, value) => scalar(value)
            .map(|v| vec![v])
            .ok_or_else(|| format!("expected a string or a number, not {}", kind(value))),
    }
}

/// A string or a number as text. A number is the text the file wrote (with its radix
/// prefix, without `_`), as if typed on the command line: `unix-mode = 0o660` reaches
/// the flag's parser as `0o660`, never converted to another base.
fn scalar(value: &toml::de::DeValue<'_>) -> Option<String> {
    use toml::de::DeValue;
    match value {
        DeValue::String(s) => Some(s.to_string()),
        DeValue::Integer(i) => Some(i.to_string()),
        DeValue::Float(f) => Some(f.to_string()),
        _ => None,
    }
}

fn kind(value: &toml::de::DeValue<'_>) -> &'static str {
    use toml::de::DeValue;
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date",
        DeValue::Array(_) => "a list",
        DeValue::Table(_) => "a table",
    }
}

/// Runs each value through argument `id`'s own value parser: the same check, and the
/// same reason, as on the command line. (clap keeps `ValueParser::parse_ref` to itself:
/// a command of one argument with that parser does the parse.)
fn check(cmd: &Command, id: &str, values: &[String]) -> Result<(), String> {
    let arg = cmd
        .get_arguments()
        .find(|a| a.get_id() == id)
        .expect("a spec's argument");
    if arg.get_action().takes_values() {
        let probe = Command::new("clutch").no_binary_name(true).arg(
            Arg::new("value")
                .long("value")
                .action(ArgAction::Set)
                .value_parser(arg.get_value_parser().clone()),
        );
        for value in values {
            if let Err(error) = probe
                .clone()
                .try_get_matches_from([format!("--value={value}")])
            {
                return Err(reason(&error, value));
            }
        }
    }
    Ok(())
}

/// Why clap refused `value`, without its naming of the probe's argument.
fn reason(error: &clap::Error, value: &str) -> String {
    use clap::error::{ContextKind, ContextValue};
    if let Some(why) = std::error::Error::source(error) {
        return format!("invalid value {value:?}: {why}");
    }
    if let Some(ContextValue::Strings(valid)) = error.get(ContextKind::ValidValue) {
        return format!(
            "invalid value {value:?}: expected one of {}",
            valid.join(", ")
        );
    }
    format!("invalid value {value:?}")
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};

    #[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
    enum Format {
        Text,
        Json,
    }

    /// A command with one argument of every shape, and the meta flags.
    #[derive(Parser, Debug, PartialEq)]
    #[command(name = "run")]
    struct Run {
        #[arg(short, long, value_parser = clap::value_parser!(u64).range(1..=10))]
        workers: Option<u64>,
        #[arg(long, default_value = "1s")]
        ready: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        log_format: Format,
        #[arg(short, long = "listen")]
        listen: Vec<String>,
        #[arg(long)]
        no_title: bool,
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        print_config: bool,
        #[arg(last = true)]
        command: Vec<OsString>,
    }

    struct Outcome {
        run: Run,
        sources: BTreeMap<String, Source>,
        report: Vec<Effective>,
    }

    /// Parses `args` with the environment `env` and, if given, a settings file with
    /// `file` in it (named by `--config`, put first).
    fn parse(
        file: Option<&str>,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Result<Outcome, SettingsError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clutch.toml");
        let mut argv: Vec<OsString> = Vec::new();
        if let Some(text) = file {
            std::fs::write(&path, text).unwrap();
            argv.extend(["--config".into(), path.clone().into()]);
        }
        argv.extend(args.iter().map(OsString::from));
        let env: BTreeMap<String, OsString> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
            .collect();
        let layer = Layer::load(&Run::command(), &argv, &|name| env.get(name).cloned())?;
        let matches = layer
            .apply(Run::command())
            .no_binary_name(true)
            .try_get_matches_from(&argv)
            .unwrap_or_else(|e| panic!("{e}"));
        let run = Run::from_arg_matches(&matches).unwrap();
        let report = layer.report(&Run::command(), &matches);
        let sources = report
            .iter()
            .map(|e| (e.spec.key.clone(), e.source.clone()))
            .collect();
        Ok(Outcome {
            run,
            sources,
            report,
        })
    }

    fn file_at(line: usize) -> impl Fn(&Source) -> bool {
        move |source| matches!(source, Source::File { line: l, path } if *l == line && path.ends_with("clutch.toml"))
    }

    #[test]
    fn every_flag_is_named_by_one_rule() {
        assert_eq!(env_name("workers"), "CLUTCH_WORKERS");
        assert_eq!(env_name("force-exit-timeout"), "CLUTCH_FORCE_EXIT_TIMEOUT");
        let specs = specs(&Run::command());
        let names: Vec<_> = specs
            .iter()
            .map(|s| (s.key.as_str(), s.env.as_deref(), s.shape))
            .collect();
        assert_eq!(
            names,
            [
                ("workers", Some("CLUTCH_WORKERS"), Shape::Single),
                ("ready", Some("CLUTCH_READY"), Shape::Single),
                ("log-format", Some("CLUTCH_LOG_FORMAT"), Shape::Single),
                ("listen", Some("CLUTCH_LISTEN"), Shape::List),
                ("no-title", Some("CLUTCH_NO_TITLE"), Shape::Switch),
                // A positional: a file key, no variable.
                ("command", None, Shape::List),
            ],
            "the meta flags (--config, --print-config) are no settings"
        );
    }

    /// flag > environment > file > default, for each shape.
    #[test]
    fn a_flag_beats_the_environment_which_beats_the_file_which_beats_the_default() {
        let file =
            "workers = 2\nready = \"2s\"\nlog-format = \"json\"\nlisten = [\"f1\", \"f2\"]\n";
        let out = parse(
            Some(file),
            &[
                ("CLUTCH_READY", "3s"),
                ("CLUTCH_LOG_FORMAT", "text"),
                ("CLUTCH_LISTEN", "e1"),
            ],
            &["--log-format", "json", "-l", "c1", "-l", "c2"],
        )
        .unwrap();
        assert_eq!(out.run.workers, Some(2));
        assert!(file_at(1)(&out.sources["workers"]));
        assert_eq!(out.run.ready, "3s");
        assert_eq!(out.sources["ready"], Source::Env("CLUTCH_READY".into()));
        assert_eq!(out.run.log_format, Format::Json);
        assert_eq!(out.sources["log-format"], Source::Flag);
        // A list from a higher source replaces the lower one's: it does not add to it.
        assert_eq!(out.run.listen, ["c1", "c2"]);
        assert_eq!(out.sources["listen"], Source::Flag);
        assert!(!out.run.no_title);
        assert_eq!(out.sources["no-title"], Source::Default);
        assert_eq!(out.sources["command"], Source::Default);

        // One level down: the environment's list, and the file's beating the default.
        let out = parse(Some(file), &[("CLUTCH_LISTEN", "e1, e2")], &[]).unwrap();
        assert_eq!(out.run.listen, ["e1", "e2"]);
        assert_eq!(out.sources["listen"], Source::Env("CLUTCH_LISTEN".into()));
        assert_eq!(out.run.ready, "2s");
        assert!(file_at(2)(&out.sources["ready"]));
        let out = parse(Some(file), &[], &[]).unwrap();
        assert_eq!(out.run.listen, ["f1", "f2"]);
        assert!(file_at(4)(&out.sources["listen"]));

        // Nothing but defaults.
        let out = parse(None, &[], &[]).unwrap();
        assert_eq!(out.run.ready, "1s");
        assert_eq!(out.run.workers, None);
        assert!(out.sources.values().all(|s| *s == Source::Default));
        let workers = out.report.iter().find(|e| e.spec.key == "workers").unwrap();
        assert_eq!(workers.toml(), None, "unset");
    }

    #[test]
    fn switches_are_booleans_in_the_file_and_true_false_1_0_in_the_environment() {
        let out = parse(Some("no-title = true"), &[], &[]).unwrap();
        assert!(out.run.no_title);
        assert!(file_at(1)(&out.sources["no-title"]));
        for (text, expected) in [
            ("1", true),
            ("true", true),
            ("TRUE", true),
            ("0", false),
            ("false", false),
        ] {
            let out = parse(Some("no-title = true"), &[("CLUTCH_NO_TITLE", text)], &[]).unwrap();
            assert_eq!(out.run.no_title, expected, "{text}");
            assert_eq!(
                out.sources["no-title"],
                Source::Env("CLUTCH_NO_TITLE".into())
            );
        }
        // The flag can only say true, and says it over the environment's false.
        let out = parse(None, &[("CLUTCH_NO_TITLE", "0")], &["--no-title"]).unwrap();
        assert!(out.run.no_title);
        assert_eq!(out.sources["no-title"], Source::Flag);
        let err = parse(None, &[("CLUTCH_NO_TITLE", "yes")], &[])
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "CLUTCH_NO_TITLE: \"yes\" is not true, false, 1 or 0"
        );
    }

    #[test]
    fn an_empty_variable_is_no_setting() {
        let out = parse(Some("workers = 3"), &[("CLUTCH_WORKERS", "")], &[]).unwrap();
        assert_eq!(out.run.workers, Some(3));
    }

    #[test]
    fn the_program_may_come_from_the_file_and_the_command_line_overrides_it() {
        let file = "command = [\"python3\", \"app.py\"]";
        let out = parse(Some(file), &[], &[]).unwrap();
        assert_eq!(out.run.command, ["python3", "app.py"]);
        assert!(file_at(1)(&out.sources["command"]));
        let out = parse(Some(file), &[], &["--", "./server", "-x"]).unwrap();
        assert_eq!(out.run.command, ["./server", "-x"]);
        assert_eq!(out.sources["command"], Source::Flag);
    }

    #[test]
    fn the_file_is_named_by_the_flag_or_else_by_clutch_config() {
        let dir = tempfile::tempdir().unwrap();
        let from_env = dir.path().join("env.toml");
        std::fs::write(&from_env, "workers = 4").unwrap();
        let env = |name: &str| (name == CONFIG_ENV).then(|| from_env.clone().into_os_string());
        let layer = Layer::load(&Run::command(), &[], &env).unwrap();
        assert_eq!(layer.file.as_deref(), Some(from_env.as_path()));
        let from_flag = dir.path().join("flag.toml");
        std::fs::write(&from_flag, "workers = 5").unwrap();
        for args in [
            vec![OsString::from("--config"), from_flag.clone().into()],
            vec![format!("--config={}", from_flag.display()).into()],
        ] {
            let layer = Layer::load(&Run::command(), &args, &env).unwrap();
            assert_eq!(layer.file.as_deref(), Some(from_flag.as_path()), "{args:?}");
        }
        // After `--`, it is the program's.
        let args: Vec<OsString> = vec!["--".into(), "--config".into(), from_flag.into()];
        let layer = Layer::load(&Run::command(), &args, &env).unwrap();
        assert_eq!(layer.file.as_deref(), Some(from_env.as_path()));
    }

    /// Each mistake names the file, the line and the key (or the variable), in one line.
    #[test]
    fn mistakes_name_the_file_the_line_and_the_key() {
        let cases: &[(&str, &str)] = &[
            ("workers = 2\n\nwokers = 3\n", ":3: unknown key `wokers`"),
            (
                "[workers]\nx = 1\n",
                ":1: `workers`: expected a string or a number, not a table",
            ),
            ("[server]\nworkers = 1\n", ":1: unknown key `server`"),
            (
                "# a comment\nworkers = 0\n",
                ":2: `workers`: invalid value \"0\": 0 is not in 1..=10",
            ),
            (
                "workers = true\n",
                ":1: `workers`: expected a string or a number, not a boolean",
            ),
            (
                "log-format = \"yaml\"\n",
                ":1: `log-format`: invalid value \"yaml\": expected one of text, json",
            ),
            (
                "listen = \"a\"\n",
                ":1: `listen`: expected a list such as [\"a\", \"b\"], not a string",
            ),
            (
                "listen = [1, [2]]\n",
                ":1: `listen`: expected a list of strings, not a list with a list",
            ),
            (
                "no-title = \"yes\"\n",
                ":1: `no-title`: expected true or false, not a string",
            ),
            ("workers = 2\nready = \n", ":2: not valid TOML: "),
            // The meta flags are not keys.
            ("config = \"other.toml\"\n", ":1: unknown key `config`"),
            ("print-config = true\n", ":1: unknown key `print-config`"),
        ];
        for (file, needle) in cases {
            let err = parse(Some(file), &[], &[])
                .err()
                .unwrap_or_else(|| panic!("{file:?} passed"));
            let text = err.to_string();
            assert!(
                text.contains(&format!("clutch.toml{needle}")),
                "{file:?}: {text}"
            );
            assert_eq!(text.lines().count(), 1, "{text}");
        }
        let err = parse(None, &[("CLUTCH_WORKERS", "11")], &[]).err().unwrap();
        assert_eq!(
            err.to_string(),
            "CLUTCH_WORKERS: invalid value \"11\": 11 is not in 1..=10"
        );
        let err = parse(None, &[("CLUTCH_LISTEN", "a,,b")], &[])
            .err()
            .unwrap();
        assert_eq!(err.to_string(), "CLUTCH_LISTEN: \"a,,b\" has an empty item");
        // A bad value in the environment is an error even when the file is fine.
        let err = parse(Some("workers = 2"), &[("CLUTCH_WORKERS", "x")], &[])
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .starts_with("CLUTCH_WORKERS: invalid value \"x\""),
            "{err}"
        );
        let missing = Layer::load(
            &Run::command(),
            &["--config".into(), "/no/such/clutch.toml".into()],
            &|_| None,
        )
        .err()
        .unwrap();
        assert!(
            missing
                .to_string()
                .starts_with("cannot read the settings file /no/such/clutch.toml: "),
            "{missing}"
        );
    }

    #[test]
    fn numbers_may_be_written_as_toml_numbers_or_strings() {
        for file in ["workers = 7", "workers = \"7\"", "workers = +7"] {
            let out = parse(Some(file), &[], &[]).unwrap();
            assert_eq!(out.run.workers, Some(7), "{file}");
        }
        let out = parse(Some("ready = 1.5"), &[], &[]).unwrap();
        assert_eq!(out.run.ready, "1.5");
        let out = parse(Some("ready = 1_000"), &[], &[]).unwrap();
        assert_eq!(out.run.ready, "1000");
        // Another base is the flag's to read, as on the command line: never converted.
        let out = parse(Some("ready = 0o660"), &[], &[]).unwrap();
        assert_eq!(out.run.ready, "0o660");
        let err = parse(Some("workers = 0x7"), &[], &[]).err().unwrap();
        assert!(err.to_string().contains("invalid value \"0x7\""), "{err}");
    }

    #[test]
    fn a_list_variable_splits_on_commas_and_escapes_them() {
        assert_eq!(split_list("a").unwrap(), ["a"]);
        assert_eq!(split_list("a, b ,c").unwrap(), ["a", "b", "c"]);
        assert_eq!(split_list(r"K=a\,b,L=c").unwrap(), ["K=a,b", "L=c"]);
        assert_eq!(split_list(r"a\\,b").unwrap(), [r"a\", "b"]);
        assert_eq!(
            split_list(r"C:\dir").unwrap(),
            [r"C:\dir"],
            "other backslashes stay"
        );
        assert!(split_list("a,").is_err());
        assert!(split_list(",").is_err());
    }

    #[test]
    fn a_refusal_says_where_the_values_it_names_came_from() {
        let out = parse(
            Some("ready = \"90s\"\n"),
            &[("CLUTCH_LOG_FORMAT", "json")],
            &["-w", "2"],
        )
        .unwrap();
        let path = out.run.config.clone().unwrap();
        let message = "--ready 90s must be shorter than the --readiness-thing; --workers \
                       and --log-format";
        assert_eq!(
            with_sources(message, &out.report),
            format!(
                "{message} (--ready: file {}:1; --log-format: env CLUTCH_LOG_FORMAT)",
                path.display()
            ),
            "--workers came from the command line: nothing to add"
        );
        assert_eq!(with_sources("nothing named", &out.report), "nothing named");
    }

    /// The flags other branches are adding (`--env KEY=VALUE`, repeatable; `--env-clear`;
    /// `--umask`; `--user`) get their variables and keys with no code of their own.
    #[test]
    fn flags_added_later_get_a_variable_and_a_key_by_being_declared() {
        fn key_value(text: &str) -> Result<(String, String), String> {
            text.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))
        }
        #[derive(Parser, Debug)]
        struct Later {
            #[arg(short, long = "env", value_parser = key_value)]
            env: Vec<(String, String)>,
            #[arg(long)]
            env_clear: bool,
            #[arg(long)]
            umask: Option<String>,
            #[arg(long)]
            user: Option<String>,
        }
        let names: Vec<_> = specs(&Later::command())
            .into_iter()
            .map(|s| (s.key, s.env.unwrap(), s.shape))
            .collect();
        assert_eq!(
            names,
            [
                ("env".to_owned(), "CLUTCH_ENV".to_owned(), Shape::List),
                (
                    "env-clear".to_owned(),
                    "CLUTCH_ENV_CLEAR".to_owned(),
                    Shape::Switch
                ),
                ("umask".to_owned(), "CLUTCH_UMASK".to_owned(), Shape::Single),
                ("user".to_owned(), "CLUTCH_USER".to_owned(), Shape::Single),
            ]
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("clutch.toml");
        std::fs::write(&file, "env = [\"A=1\", \"LIST=x,y\"]\numask = \"027\"\n").unwrap();
        let args: Vec<OsString> = vec!["--config".into(), file.into()];
        let parsed = |env: &[(&str, &str)]| {
            let env: BTreeMap<String, OsString> = env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).into()))
                .collect();
            let layer = Layer::load(&Later::command(), &args, &|n| env.get(n).cloned())?;
            let matches = layer
                .apply(Later::command())
                .try_get_matches_from(["later"])
                .unwrap();
            Ok::<_, SettingsError>(Later::from_arg_matches(&matches).unwrap())
        };
        let later = parsed(&[]).unwrap();
        assert_eq!(
            later.env,
            [("A".into(), "1".into()), ("LIST".into(), "x,y".into())]
        );
        assert_eq!(later.umask.as_deref(), Some("027"));
        let later = parsed(&[
            ("CLUTCH_ENV", r"B=2,PATH=/bin\,/usr/bin"),
            ("CLUTCH_ENV_CLEAR", "1"),
            ("CLUTCH_USER", "www"),
        ])
        .unwrap();
        assert_eq!(
            later.env,
            [
                ("B".into(), "2".into()),
                ("PATH".into(), "/bin,/usr/bin".into())
            ]
        );
        assert!(later.env_clear);
        assert_eq!(later.user.as_deref(), Some("www"));
        let err = parsed(&[("CLUTCH_ENV", "B")]).err().unwrap();
        assert_eq!(
            err.to_string(),
            "CLUTCH_ENV: invalid value \"B\": \"B\" is not KEY=VALUE"
        );
    }

    /// A value with a leading zero (`--umask 027`, `--unix-mode 0660`) is no TOML number:
    /// the report quotes it, so that it still reads back.
    #[test]
    fn a_leading_zero_is_reported_as_a_string() {
        let out = parse(None, &[("CLUTCH_WORKERS", "3")], &["--ready", "0660"]).unwrap();
        let shown = |key: &str| {
            out.report
                .iter()
                .find(|e| e.spec.key == key)
                .and_then(Effective::toml)
                .unwrap()
        };
        assert_eq!(shown("ready"), "\"0660\"");
        assert_eq!(shown("workers"), "3", "a plain number stays one");
        let text: String = out
            .report
            .iter()
            .filter_map(|e| e.toml().map(|v| format!("{} = {v}\n", e.spec.key)))
            .collect();
        let again = parse(Some(&text), &[], &[]).unwrap();
        assert_eq!(again.run.ready, "0660", "{text}");
    }

    /// `--print-config`'s text is a settings file: read back, it gives the same values.
    #[test]
    fn the_report_reads_back_as_a_settings_file() {
        let out = parse(
            Some("workers = 3\nlisten = [\"a\\\"b\", \"c\"]\ncommand = [\"sh\", \"-c\", \"echo hi\"]"),
            &[("CLUTCH_NO_TITLE", "1"), ("CLUTCH_READY", "notify")],
            &["--log-format", "json"],
        )
        .unwrap();
        let text: String = out
            .report
            .iter()
            .filter_map(|e| e.toml().map(|v| format!("{} = {v}\n", e.spec.key)))
            .collect();
        let mut again = parse(Some(&text), &[], &[]).unwrap();
        again.run.config.clone_from(&out.run.config); // (another temporary file)
        assert_eq!(again.run, out.run, "{text}");
        let json: Vec<_> = out.report.iter().map(Effective::json).collect();
        assert_eq!(json[0]["key"], "workers");
        assert_eq!(json[0]["value"], "3");
        assert_eq!(json[0]["source"], "file");
        assert_eq!(json[0]["source_line"], 1);
        assert_eq!(json[1]["source"], "env");
        assert_eq!(json[1]["source_env"], "CLUTCH_READY");
        assert_eq!(json[2]["source"], "flag");
        assert_eq!(json[4]["value"], true);
    }
}
