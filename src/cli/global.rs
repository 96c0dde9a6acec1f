//! Flags every command takes: output format, log format and verbosity; and the tracing set-up.
//! Logs and progress go to stderr, results to stdout.

use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Output format of results (stdout).
    #[arg(
        short,
        long,
        global = true,
        value_enum,
        default_value = "table",
        env = "CPKEEP_OUTPUT"
    )]
    pub output: OutputFormat,

    /// Log format (stderr).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "CPKEEP_LOG_FORMAT"
    )]
    pub log_format: LogFormat,

    /// More logging (-v debug, -vv trace); the default is info.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Only errors in the log.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// A YAML file with a section per command whose keys are its long flag names (`backup:
    /// {store: ..., keep-last: 4}`, `connection: {endpoints: ...}`); flags and env win over it.
    #[arg(long, global = true, env = "CPKEEP_CONFIG", value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
}

/// Installs the tracing subscriber. `CPKEEP_LOG` (an EnvFilter directive) overrides -v/-q.
pub fn init_logging(args: &GlobalArgs) {
    use tracing_subscriber::EnvFilter;
    let level = match (args.quiet, args.verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    // Dependencies (tonic, h2, hyper) are chatty at debug; keep them one level quieter than cpkeep.
    let default =
        format!("{level},cpkeep={level},h2=warn,hyper=warn,tower=warn,tonic=warn,rustls=warn");
    let filter = std::env::var("CPKEEP_LOG")
        .ok()
        .and_then(|s| EnvFilter::try_new(s).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let _ = match args.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
