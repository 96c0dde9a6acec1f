//! `cpkeep config show COMMAND...` (each flag's effective value and where it came from, secrets
//! redacted) and `cpkeep config validate` (the file checked against every command it feeds), and
//! the parse of the process arguments with the file's values merged in.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, Command, CommandFactory, FromArgMatches, Subcommand};
use serde::Serialize;

use super::config_file::{command_at, cron_fields, ConfigError, ConfigFile, Value};
use super::exit::Exit;
use super::output::{Render, Renderer};
use super::table::Table;
use super::Cli;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Show the effective value of each flag of a command and where it comes from (flag, env,
    /// file, default); secrets redacted. E.g. `cpkeep --config cpkeep.yaml config show backup`.
    Show(ShowArgs),
    /// Check the configuration file: sections, keys (flag names), values, schedules; exit 0 or 3.
    Validate,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The command, as typed after `cpkeep` (e.g. `backup`, `cluster health`), with any flags.
    #[arg(required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// Why the arguments could not be parsed.
pub enum ParseFailure {
    Clap(clap::Error),
    Config(ConfigError),
}

/// The path of subcommand names to the leaf, and the leaf's matches.
fn leaf(m: &ArgMatches) -> (Vec<String>, &ArgMatches) {
    let mut path = Vec::new();
    let mut cur = m;
    while let Some((name, sub)) = cur.subcommand() {
        path.push(name.to_string());
        cur = sub;
    }
    (path, cur)
}

/// The configuration file named by `--config` or `CPKEEP_CONFIG`, if any.
fn config_path(m: &ArgMatches) -> Option<PathBuf> {
    m.get_one::<PathBuf>("config").cloned()
}

/// Parses `argv` with the configuration file's values merged in: a value from the file is used
/// only where neither the command line nor the environment set the flag.
pub fn parse(argv: Vec<OsString>) -> Result<Cli, ParseFailure> {
    let cmd = Cli::command();
    // A first, lenient pass finds the command and what the user set; a flag that only the file
    // gives is "missing" here.
    let lenient = cmd
        .clone()
        .ignore_errors(true)
        .try_get_matches_from(&argv)
        .map_err(ParseFailure::Clap)?;
    let Some(path) = config_path(&lenient) else {
        return <Cli as clap::Parser>::try_parse_from(argv).map_err(ParseFailure::Clap);
    };
    let file = ConfigFile::load(&path, &cmd).map_err(ParseFailure::Config)?;
    let (leaf_path, leaf_m) = leaf(&lenient);
    let mut argv = argv;
    if let Some(leaf_cmd) = command_at(
        &cmd,
        &leaf_path.iter().map(String::as_str).collect::<Vec<_>>(),
    ) {
        argv.extend(file.arguments_for(&leaf_path, leaf_cmd, leaf_m));
    }
    let matches = cmd.try_get_matches_from(argv).map_err(ParseFailure::Clap)?;
    Cli::from_arg_matches(&matches).map_err(ParseFailure::Clap)
}

/// One flag's effective value.
#[derive(Debug, Serialize)]
pub struct Setting {
    pub flag: String,
    pub value: Option<String>,
    /// `flag`, `env`, `file`, `default` or `unset`.
    pub source: &'static str,
    /// The line in the file, for a value that came from it.
    pub line: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct ShowReport {
    pub config: Option<PathBuf>,
    pub command: String,
    pub settings: Vec<Setting>,
}

impl Render for ShowReport {
    fn table(&self) -> String {
        let mut t = Table::new(["FLAG", "VALUE", "SOURCE"]);
        for s in &self.settings {
            t.row([
                format!("--{}", s.flag),
                s.value.clone().unwrap_or_else(|| "-".to_string()),
                match s.line {
                    Some(l) => format!("{} (line {l})", s.source),
                    None => s.source.to_string(),
                },
            ]);
        }
        format!(
            "cpkeep {} (configuration: {})\n{}",
            self.command,
            self.config
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "none".to_string()),
            t.render()
        )
    }
}

#[derive(Debug, Serialize)]
pub struct ValidateReport {
    pub config: PathBuf,
    pub sections: Vec<SectionSummary>,
}

#[derive(Debug, Serialize)]
pub struct SectionSummary {
    pub section: String,
    pub keys: Vec<String>,
    /// The schedule as the daemon runs it (6 fields, seconds first), when the section has one.
    pub schedule: Option<String>,
}

impl Render for ValidateReport {
    fn table(&self) -> String {
        let mut s = format!("{}: valid\n", self.config.display());
        for sec in &self.sections {
            s.push_str(&format!("  {}: {}", sec.section, sec.keys.join(", ")));
            if let Some(c) = &sec.schedule {
                s.push_str(&format!(" (runs at {c:?}, UTC)"));
            }
            s.push('\n');
        }
        s
    }
}

/// Values that are secrets, or hold one (`user:password`, URL user info).
fn redact(flag: &str, value: &str) -> String {
    let lower = flag.to_ascii_lowercase();
    if lower.contains("password") || lower.contains("secret") || lower.contains("token") {
        return "<redacted>".to_string();
    }
    if lower == "user" {
        if let Some((u, _)) = value.split_once(':') {
            return format!("{u}:<redacted>");
        }
    }
    if let Some((scheme, rest)) = value.split_once("://") {
        if let Some((userinfo, host)) = rest.split_once('@') {
            if !userinfo.contains('/') {
                return format!("{scheme}://<redacted>@{host}");
            }
        }
    }
    value.to_string()
}

pub fn run(cmd: ConfigCommand, config: Option<PathBuf>, out: &Renderer) -> anyhow::Result<Exit> {
    let cli = Cli::command();
    match cmd {
        ConfigCommand::Validate => {
            let Some(path) = config else {
                anyhow::bail!(super::exit::classified(
                    crate::failure::FailureClass::Unusable,
                    &"no configuration file: pass --config FILE or set CPKEEP_CONFIG"
                ));
            };
            // `parse` has loaded and checked it already; load again for the summary.
            let file = ConfigFile::load(&path, &cli)
                .map_err(|e| super::exit::classified(crate::failure::FailureClass::Unusable, &e))?;
            let sections = file
                .sections
                .iter()
                .map(|(name, keys)| SectionSummary {
                    section: name.clone(),
                    keys: keys.keys().cloned().collect(),
                    schedule: keys.get("schedule").and_then(|e| match &e.value {
                        Value::Text(s) => cron_fields(s).ok(),
                        _ => None,
                    }),
                })
                .collect();
            out.print(&ValidateReport {
                config: path,
                sections,
            })?;
            Ok(Exit::Ok)
        }
        ConfigCommand::Show(args) => {
            let mut argv: Vec<OsString> = vec!["cpkeep".into()];
            argv.extend(args.command.iter().map(OsString::from));
            let lenient = cli.clone().ignore_errors(true);
            let typed = lenient
                .clone()
                .try_get_matches_from(&argv)
                .map_err(|e| anyhow::anyhow!("{}", e.kind()))?;
            let (path, _) = leaf(&typed);
            let words: Vec<&str> = path.iter().map(String::as_str).collect();
            let Some(leaf_cmd) = command_at(&cli, &words).filter(|_| !path.is_empty()) else {
                anyhow::bail!(super::exit::classified(
                    crate::failure::FailureClass::Unusable,
                    &format!("{:?} is not a cpkeep command", args.command.join(" "))
                ));
            };
            let (from_file, lines) = match &config {
                Some(p) => {
                    let file = ConfigFile::load(p, &cli).map_err(|e| {
                        super::exit::classified(crate::failure::FailureClass::Unusable, &e)
                    })?;
                    let (_, leaf_m) = leaf(&typed);
                    (
                        file.arguments_for(&path, leaf_cmd, leaf_m),
                        file.lines_for(&path),
                    )
                }
                None => (Vec::new(), Default::default()),
            };
            let file_flags: Vec<String> = from_file
                .iter()
                .filter_map(|a| a.to_str())
                .filter_map(|a| a.strip_prefix("--"))
                .map(|a| a.split('=').next().unwrap_or(a).to_string())
                .collect();
            argv.extend(from_file);
            let merged = lenient
                .try_get_matches_from(&argv)
                .map_err(|e| anyhow::anyhow!("{}", e.kind()))?;
            let (_, m) = leaf(&merged);
            let mut settings = settings(leaf_cmd, m, &file_flags);
            for s in &mut settings {
                if s.source == "file" {
                    s.line = lines.get(&s.flag).copied();
                }
            }
            out.print(&ShowReport {
                config,
                command: path.join(" "),
                settings,
            })?;
            Ok(Exit::Ok)
        }
    }
}

fn settings(c: &Command, m: &ArgMatches, file_flags: &[String]) -> Vec<Setting> {
    let mut out = Vec::new();
    for arg in c.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if matches!(long, "help" | "version") || arg.is_global_set() {
            continue;
        }
        let id = arg.get_id().as_str();
        let value = m.get_raw(id).map(|vals| {
            let joined: Vec<String> = vals.map(|v| v.to_string_lossy().into_owned()).collect();
            redact(long, &joined.join(","))
        });
        let source = match m.value_source(id) {
            Some(ValueSource::CommandLine) if file_flags.iter().any(|f| f == long) => "file",
            Some(ValueSource::CommandLine) => "flag",
            Some(ValueSource::EnvVariable) => "env",
            Some(ValueSource::DefaultValue) => "default",
            _ => "unset",
        };
        out.push(Setting {
            flag: long.to_string(),
            value,
            source,
            line: None,
        });
    }
    out
}
