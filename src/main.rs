//! The `cpkeep` binary: parse the command line, run one command, turn its outcome into an exit code.
//! Everything else lives in the library; this file must stay thin.

use std::process::ExitCode;

fn main() -> ExitCode {
    cpkeep::run_cli()
}
