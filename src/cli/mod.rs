//! The command line: clap definitions (one file per command group), logging set-up, rendering of the
//! typed reports the library returns (one renderer for table and JSON), and the mapping of outcomes to
//! documented exit codes. The only module that prints.

mod backup;
mod backup_follow;
mod bootstrap;
mod bootstrap_apply;
mod certs;
mod certs_renew;
mod cluster;
mod cluster_defrag;
mod cluster_doctor;
mod cluster_drill;
mod cluster_member;
mod config;
mod config_file;
mod connection;
mod daemon;
mod demo;
mod demo_bootstrap;
mod demo_daemon;
mod demo_doctor;
mod demo_members;
mod demo_pitr;
mod duration;
mod exit;
mod global;
mod output;
mod progress;
mod restore;
mod signals;
mod snapshot;
mod store_args;
mod table;
mod version;

use clap::{Parser, Subcommand};

pub use exit::Exit;
use global::GlobalArgs;

/// cpkeep keeps a kubeadm HA control plane alive: etcd quorum, snapshots, restore, certificates.
#[derive(Debug, Parser)]
#[command(name = "cpkeep", version = crate::VERSION, propagate_version = true)]
#[command(about, long_about = None, max_term_width = 110)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The etcd cluster: quorum, members, alarms; membership changes and defragmentation.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Take a verified, streamed, compressed (and optionally encrypted) snapshot into a store.
    Backup(Box<backup::BackupArgs>),
    /// Stored snapshots: list, get, save, prune.
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCommand),
    /// Rebuild an etcd data directory from a snapshot, natively (no etcdutl needed).
    Restore(Box<restore::RestoreArgs>),
    /// kubeadm certificates: check expiry, chains and keys; alert through Prometheus or a webhook.
    #[command(subcommand)]
    Certs(certs::CertsCommand),
    /// Plan an HA control plane with kubeadm (inventory → verified bundle) and apply it over SSH.
    #[command(subcommand)]
    Bootstrap(bootstrap::BootstrapCommand),
    /// One configuration file for every command: show what a command would use, validate the file.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Run the configuration file's jobs on their schedules, with Prometheus metrics on --listen.
    Daemon(daemon::DaemonArgs),
    /// Print cpkeep's version.
    Version,
    /// Run the demonstration on a local 3-member TLS etcd sandbox.
    Demo(demo::DemoArgs),
}

/// Parses the process arguments, runs the command and returns its exit code. Errors are printed here
/// as one line behind the program name, with the whole cause chain.
pub fn main() -> Exit {
    let cli = match config::parse(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(config::ParseFailure::Config(e)) => {
            eprintln!("cpkeep: {e}");
            return Exit::Unknown;
        }
        Err(config::ParseFailure::Clap(e)) if e.use_stderr() => {
            // One line, like every other error: clap's first line, without its usage block.
            let text = e.render().to_string();
            let message: Vec<&str> = text
                .lines()
                .map(str::trim)
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
                .collect();
            let message = message.join(" ");
            let message = message.trim_start_matches("error: ");
            eprintln!("cpkeep: {message} (see cpkeep --help)");
            return Exit::Unknown;
        }
        Err(config::ParseFailure::Clap(e)) => {
            // --help and --version.
            let _ = e.print();
            return Exit::Ok;
        }
    };
    global::init_logging(&cli.global);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cpkeep: cannot start the async runtime: {e}");
            return Exit::Unknown;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("cpkeep: {}", exit::one_line(&err));
            exit::code_of(&err)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<Exit> {
    let out = output::Renderer::new(cli.global.output);
    let quiet = cli.global.quiet;
    match cli.command {
        Command::Cluster(cmd) => cluster::run(cmd, &out).await,
        Command::Backup(args) => backup::run(*args, &out, quiet).await,
        Command::Snapshot(cmd) => snapshot::run(cmd, &out, quiet).await,
        Command::Restore(args) => restore::run(*args, &out).await,
        Command::Certs(cmd) => certs::run(cmd, &out).await,
        Command::Bootstrap(cmd) => bootstrap::run(cmd, &out).await,
        Command::Config(cmd) => config::run(cmd, cli.global.config.clone(), &out),
        Command::Daemon(args) => daemon::run(args, cli.global.config.clone()).await,
        Command::Version => version::run(&out),
        Command::Demo(args) => demo::run(args, &out).await,
    }
}
