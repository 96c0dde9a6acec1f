//! `--config FILE` (`CPKEEP_CONFIG`): one YAML file for every command, a section per command whose
//! keys are that command's long flag names (`backup: {store: ..., keep-last: 4}`), plus
//! `connection` for the etcd connection flags every command shares. A value from the file is given
//! to clap as if it had been typed, but only for a flag that neither the command line nor the
//! environment set: flags > env > file > defaults holds by construction, and every value goes
//! through the flag's own parser. Unknown sections and keys are errors naming the key and its line.
//! The daemon's keys (`schedule`, `enabled`, the `daemon` section) are accepted and checked for
//! shape here; the daemon reads them.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Args, Command};
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::connection::ConnectionArgs;

/// A scalar or a list of scalars, as YAML wrote it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    List(Vec<Scalar>),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Bool(b) => b.to_string(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Text(s) => s.clone(),
        }
    }
}

/// One key of a section.
#[derive(Debug, Clone)]
pub struct Entry {
    pub value: Value,
    pub line: u64,
}

/// The file, read and checked.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub sections: BTreeMap<String, BTreeMap<String, Entry>>,
}

/// Which commands a section feeds (its keys must be flags of at least one of them).
const SECTIONS: &[(&str, &[&[&str]])] = &[
    ("backup", &[&["backup"]]),
    ("health", &[&["cluster", "health"]]),
    ("members", &[&["cluster", "members"]]),
    ("defrag", &[&["cluster", "defrag"]]),
    ("certs", &[&["certs", "check"], &["certs", "renew"]]),
    (
        "snapshot",
        &[
            &["snapshot", "list"],
            &["snapshot", "get"],
            &["snapshot", "save"],
            &["snapshot", "prune"],
            &["snapshot", "status"],
            &["snapshot", "verify"],
        ],
    ),
    ("drill", &[&["snapshot", "verify"]]),
    ("restore", &[&["restore"]]),
];

/// Keys a job section may carry for the daemon: when it runs, and whether at all.
const JOB_KEYS: [&str; 2] = ["schedule", "enabled"];
/// The health section's daemon key: when its runs also check data consistency (cron, or `off`).
pub const CONSISTENCY_SCHEDULE: &str = "consistency-schedule";
/// The daemon's own section.
const DAEMON_KEYS: [&str; 3] = ["listen", "jitter", "shutdown-grace"];

/// Why the file cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct ConfigError {
    pub path: PathBuf,
    pub reason: String,
}

fn err(path: &Path, reason: String) -> ConfigError {
    ConfigError {
        path: path.to_path_buf(),
        reason,
    }
}

type RawFile = BTreeMap<String, Option<BTreeMap<String, Spanned<Value>>>>;

impl ConfigFile {
    /// Reads and checks `path` against the command tree `cli`.
    pub fn load(path: &Path, cli: &Command) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| err(path, crate::certs::error::io_reason(&e)))?;
        Self::parse(path, &text, cli)
    }

    pub fn parse(path: &Path, text: &str, cli: &Command) -> Result<Self, ConfigError> {
        let raw: RawFile = if text.trim().is_empty() {
            RawFile::new()
        } else {
            serde_saphyr::from_str(text).map_err(|e| {
                err(
                    path,
                    crate::bootstrap::inventory::one_line_yaml_error(&e)
                        + " (each section is a mapping of flag names to values)",
                )
            })?
        };
        let mut sections = BTreeMap::new();
        for (name, keys) in raw {
            if !SECTIONS.iter().any(|(n, _)| *n == name) && name != "connection" && name != "daemon"
            {
                let line = text
                    .lines()
                    .position(|l| l.starts_with(&format!("{name}:")))
                    .map(|i| format!("line {}: ", i + 1))
                    .unwrap_or_default();
                let mut known: Vec<&str> = SECTIONS.iter().map(|(n, _)| *n).collect();
                known.extend(["connection", "daemon"]);
                return Err(err(
                    path,
                    format!(
                        "{line}{name}: no such section (known: {})",
                        known.join(", ")
                    ),
                ));
            }
            let keys = keys.unwrap_or_default();
            let mut entries = BTreeMap::new();
            for (key, v) in keys {
                let line = v.referenced.line();
                let at = |why: String| err(path, format!("line {line}: {name}.{key}: {why}"));
                check_key(cli, &name, &key, &v.value).map_err(at)?;
                entries.insert(
                    key,
                    Entry {
                        value: v.value,
                        line,
                    },
                );
            }
            sections.insert(name, entries);
        }
        Ok(Self { sections })
    }

    /// The line of each key that feeds the command at `leaf_path`.
    pub fn lines_for(&self, leaf_path: &[String]) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for section in sections_of(leaf_path) {
            for (k, e) in self.sections.get(section).into_iter().flatten() {
                out.insert(k.clone(), e.line);
            }
        }
        out
    }

    /// The arguments the file adds to the command at `leaf_path` whose matches are `m`: one
    /// `--key=value` for every key of its sections whose flag the command line and the environment
    /// left unset.
    pub fn arguments_for(
        &self,
        leaf_path: &[String],
        leaf: &Command,
        m: &ArgMatches,
    ) -> Vec<OsString> {
        let mut out = Vec::new();
        for section in sections_of(leaf_path) {
            let Some(entries) = self.sections.get(section) else {
                continue;
            };
            for (key, entry) in entries {
                let Some(arg) = leaf.get_arguments().find(|a| a.get_long() == Some(key)) else {
                    continue;
                };
                let source = m.value_source(arg.get_id().as_str());
                if matches!(
                    source,
                    Some(ValueSource::CommandLine | ValueSource::EnvVariable)
                ) {
                    continue;
                }
                match (arg.get_action(), &entry.value) {
                    (ArgAction::SetTrue, Value::Bool(true)) => out.push(format!("--{key}").into()),
                    (ArgAction::SetTrue, _) => {}
                    (ArgAction::SetFalse, Value::Bool(false)) => {
                        out.push(format!("--{key}").into())
                    }
                    (_, Value::List(items)) if arg.get_value_delimiter().is_some() => {
                        let joined: Vec<String> = items.iter().map(Scalar::text).collect();
                        out.push(format!("--{key}={}", joined.join(",")).into());
                    }
                    (_, Value::List(items)) => {
                        for i in items {
                            out.push(format!("--{key}={}", i.text()).into());
                        }
                    }
                    (_, v) => out.push(format!("--{key}={}", scalar_text(v)).into()),
                }
            }
        }
        out
    }
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Text(s) => s.clone(),
        Value::List(items) => items.iter().map(Scalar::text).collect::<Vec<_>>().join(","),
    }
}

/// The sections that feed the command at `path` (`connection` feeds every command that has its
/// flags).
pub fn sections_of(path: &[String]) -> Vec<&'static str> {
    let mut out = vec!["connection"];
    for (name, commands) in SECTIONS {
        if commands
            .iter()
            .any(|c| c.iter().copied().eq(path.iter().map(String::as_str)))
        {
            out.push(name);
        }
    }
    out
}

/// The subcommand at `path` in `cli`.
pub fn command_at<'c>(cli: &'c Command, path: &[&str]) -> Option<&'c Command> {
    let mut c = cli;
    for p in path {
        c = c.find_subcommand(p)?;
    }
    Some(c)
}

/// Whether `key` may stand in section `name`, and its value has a usable shape.
fn check_key(cli: &Command, name: &str, key: &str, value: &Value) -> Result<(), String> {
    if name == "daemon" {
        if !DAEMON_KEYS.contains(&key) {
            return Err(format!(
                "not a daemon setting (known: {})",
                DAEMON_KEYS.join(", ")
            ));
        }
        return Ok(());
    }
    if name == "connection" {
        let conn = ConnectionArgs::augment_args(Command::new("connection"));
        if !conn.get_arguments().any(|a| a.get_long() == Some(key)) {
            return check_flag(cli, &[], &conn, key, value);
        }
        // Every command with the connection flags parses them alike; `cluster health` has them.
        let path = ["cluster", "health"];
        return match command_at(cli, &path) {
            Some(c) => check_flag(cli, &path, c, key, value),
            None => Err("no command reads this section".to_string()),
        };
    }
    let Some((_, commands)) = SECTIONS.iter().find(|(n, _)| *n == name) else {
        let mut known: Vec<&str> = SECTIONS.iter().map(|(n, _)| *n).collect();
        known.extend(["connection", "daemon"]);
        return Err(format!("no such section (known: {})", known.join(", ")));
    };
    if key == CONSISTENCY_SCHEDULE && name == "health" {
        return match value {
            Value::Text(s) if s.trim() == "off" => Ok(()),
            Value::Text(s) => cron_fields(s).map(|_| ()),
            _ => Err("a cron schedule is text, e.g. \"0 * * * *\", or \"off\"".to_string()),
        };
    }
    if JOB_KEYS.contains(&key) {
        return match (key, value) {
            ("schedule", Value::Text(s)) => cron_fields(s).map(|_| ()),
            ("schedule", _) => Err("a cron schedule is text, e.g. \"17 */6 * * *\"".to_string()),
            ("enabled", Value::Bool(_)) => Ok(()),
            _ => Err("is true or false".to_string()),
        };
    }
    let mut last = None;
    for path in commands.iter() {
        let Some(c) = command_at(cli, path) else {
            continue;
        };
        match check_flag(cli, path, c, key, value) {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| "no command reads this section".to_string()))
}

/// `key` is a long flag of `c` (the command at `path`) and `value` passes its parser: the value is
/// parsed by clap on its own, `cpkeep PATH --key=value`, so a missing required flag or a conflict
/// with another (which the rest of the file or the command line settles) does not count.
fn check_flag(
    cli: &Command,
    path: &[&str],
    c: &Command,
    key: &str,
    value: &Value,
) -> Result<(), String> {
    let Some(arg) = c.get_arguments().find(|a| a.get_long() == Some(key)) else {
        let mut known: Vec<&str> = c
            .get_arguments()
            .filter_map(|a| a.get_long())
            .filter(|l| *l != "help")
            .collect();
        known.sort_unstable();
        return Err(format!(
            "`{}` has no flag --{key} (its flags: {})",
            c.get_name(),
            known.join(", ")
        ));
    };
    if matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse) {
        return match value {
            Value::Bool(_) => Ok(()),
            _ => Err("is true or false".to_string()),
        };
    }
    let values: Vec<String> = match value {
        Value::List(items) => items.iter().map(Scalar::text).collect(),
        v => vec![scalar_text(v)],
    };
    for v in values {
        let mut argv: Vec<String> = vec!["cpkeep".to_string()];
        argv.extend(path.iter().map(|p| p.to_string()));
        argv.push(format!("--{key}={v}"));
        if let Err(e) = cli.clone().try_get_matches_from(argv) {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::InvalidValue
                    | ErrorKind::ValueValidation
                    | ErrorKind::WrongNumberOfValues
                    | ErrorKind::TooManyValues
                    | ErrorKind::TooFewValues
                    | ErrorKind::NoEquals
            ) {
                let text = e.render().to_string();
                let first = text.lines().next().unwrap_or_default();
                return Err(first.trim_start_matches("error: ").to_string());
            }
        }
    }
    Ok(())
}

/// A schedule as 6 fields with seconds first (what tokio-cron-scheduler reads): a standard
/// 5-field line gets `0` seconds; `@hourly`-style names pass as they are.
pub fn cron_fields(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.starts_with('@') {
        return match s {
            "@yearly" | "@annually" | "@monthly" | "@weekly" | "@daily" | "@midnight"
            | "@hourly" => Ok(s.to_string()),
            _ => Err(format!(
                "{s:?} is not a cron shorthand (@hourly, @daily, @weekly, @monthly, @yearly)"
            )),
        };
    }
    let fields: Vec<&str> = s.split_whitespace().collect();
    let six = match fields.len() {
        5 => format!("0 {}", fields.join(" ")),
        6 => fields.join(" "),
        n => {
            return Err(format!(
                "{s:?} has {n} fields: a schedule is standard 5-field cron (minute hour day month weekday) or 6 fields with seconds first"
            ))
        }
    };
    for (f, (lo, hi, what)) in six.split(' ').zip([
        (0, 59, "second"),
        (0, 59, "minute"),
        (0, 23, "hour"),
        (1, 31, "day of month"),
        (1, 12, "month"),
        (0, 7, "day of week"),
    ]) {
        check_field(f, lo, hi).map_err(|why| format!("{s:?}: {what} {f:?}: {why}"))?;
    }
    Ok(six)
}

fn check_field(f: &str, lo: u32, hi: u32) -> Result<(), String> {
    for part in f.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, st)) => (r, Some(st)),
            None => (part, None),
        };
        if let Some(st) = step {
            match st.parse::<u32>() {
                Ok(n) if n > 0 => {}
                _ => return Err(format!("step {st:?} is not a positive number")),
            }
        }
        if range == "*" || range == "?" {
            continue;
        }
        let num = |x: &str| -> Result<u32, String> {
            if let Ok(n) = x.parse::<u32>() {
                return if (lo..=hi).contains(&n) {
                    Ok(n)
                } else {
                    Err(format!("{n} is outside {lo}-{hi}"))
                };
            }
            // Month and weekday names.
            const NAMES: [&str; 19] = [
                "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
                "sun", "mon", "tue", "wed", "thu", "fri", "sat",
            ];
            if NAMES.contains(&x.to_ascii_lowercase().as_str()) {
                Ok(lo)
            } else {
                Err(format!("{x:?} is not a number"))
            }
        };
        match range.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("range {range} runs backwards"));
                }
            }
            None => {
                num(range)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "config_file_tests.rs"]
mod tests;
