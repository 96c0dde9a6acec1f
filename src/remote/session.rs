//! One node's session: where it is ([`Target`]), the connection, and running scripts and moving
//! files there.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::error::{last_lines, RemoteError};
use super::script::Script;

/// Where a node's commands run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// On this machine, through `sh -c` (the inventory's `ssh: local`).
    Local,
    /// Over ssh.
    Ssh(SshTarget),
}

/// How to reach a node over ssh. Everything else (agent, jump hosts, ciphers) comes from the
/// user's ssh_config, or from `config_file` when set; host keys are always checked strictly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// IP address or DNS name (or a `Host` alias of the ssh_config).
    pub host: String,
    pub user: String,
    pub port: u16,
    /// `ssh -i` (then only this key is offered).
    pub identity_file: Option<PathBuf>,
    /// `ssh -F`.
    pub config_file: Option<PathBuf>,
}

/// What a script did. Its secrets are masked in both outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The exit status; -1 when the script was killed by a signal.
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

/// A connection to one node; [`Session::close`] ends it (dropping it ends it too, less politely).
pub struct Session {
    node: String,
    inner: Inner,
}

enum Inner {
    Local,
    Ssh {
        session: openssh::Session,
        user: String,
    },
}

/// Raw result of one program run on the node.
struct Raw {
    status: i32,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Reads the script from standard input and runs it, so that neither the local `ssh` nor the
/// remote shell carries it on a command line. Its own commands see an exhausted standard input.
const RUN_FROM_STDIN: &str = "eval \"$(cat)\"";

/// Writes standard input to `$1` with mode `$2`, atomically: a temporary file (created under umask
/// 077) in the same directory, chmod, then rename over the target.
const WRITE_FILE: &str = r#"set -eu
p=$1; m=$2; d=$(dirname -- "$p")
if [ -d "$p" ]; then echo "$p is a directory" >&2; exit 1; fi
mkdir -p -- "$d"
umask 077
t=$(mktemp "$d/.cpkeep-write.XXXXXX")
trap 'rm -f -- "$t"' EXIT
cat >"$t"
chmod "$m" "$t"
mv -f -- "$t" "$p"
trap - EXIT"#;

/// How many lines of standard error a command failure quotes.
const STDERR_LINES: usize = 5;

impl Session {
    /// Connects to `node` (its inventory name, used in messages) at `target` within `timeout`.
    pub async fn connect(
        node: &str,
        target: &Target,
        timeout: Duration,
    ) -> Result<Session, RemoteError> {
        let inner = match target {
            Target::Local => Inner::Local,
            Target::Ssh(t) => {
                let mut b = openssh::SessionBuilder::default();
                b.user(t.user.clone())
                    .port(t.port)
                    .known_hosts_check(openssh::KnownHosts::Strict)
                    .connect_timeout(timeout.max(Duration::from_secs(1)))
                    .server_alive_interval(Duration::from_secs(15))
                    .control_directory(std::env::temp_dir());
                if let Some(k) = &t.identity_file {
                    b.keyfile(k);
                }
                if let Some(f) = &t.config_file {
                    b.config_file(f);
                }
                let session = match tokio::time::timeout(timeout, b.connect(&t.host)).await {
                    Err(_) => {
                        return Err(RemoteError::Timeout {
                            node: node.to_string(),
                            after: timeout,
                        })
                    }
                    Ok(Err(e)) => return Err(RemoteError::from_ssh(node, &t.user, &chain(&e))),
                    Ok(Ok(s)) => s,
                };
                Inner::Ssh {
                    session,
                    user: t.user.clone(),
                }
            }
        };
        Ok(Session {
            node: node.to_string(),
            inner,
        })
    }

    /// The node's name, as given to [`Session::connect`].
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Runs `script` with `sh`; an `Err` only when it could not be run (the connection failed),
    /// whatever its exit status.
    pub async fn run(&self, script: &Script) -> Result<Output, RemoteError> {
        let raw = self
            .exec(
                &["sh", "-c", RUN_FROM_STDIN],
                script.text().as_bytes(),
                &script.masked(),
            )
            .await?;
        Ok(Output {
            status: raw.status,
            stdout: script.mask(&String::from_utf8_lossy(&raw.stdout)),
            stderr: script.mask(&String::from_utf8_lossy(&raw.stderr)),
        })
    }

    /// Runs `script` and returns its standard output; a non-zero exit is a
    /// [`RemoteError::Command`] quoting the end of its standard error.
    pub async fn run_ok(&self, script: &Script) -> Result<String, RemoteError> {
        let out = self.run(script).await?;
        if out.status != 0 {
            return Err(RemoteError::Command {
                node: self.node.clone(),
                command: script.masked(),
                status: out.status,
                stderr: last_lines(&out.stderr, STDERR_LINES),
            });
        }
        Ok(out.stdout)
    }

    /// Writes `contents` to `path` with `mode` (e.g. 0o600), atomically: the parent directory is
    /// created, the contents go to a temporary file in it (never readable by others, even for a
    /// moment) through standard input, then it is renamed over `path`.
    pub async fn write_file(
        &self,
        path: &str,
        contents: &[u8],
        mode: u32,
    ) -> Result<(), RemoteError> {
        let mode = format!("{:o}", mode & 0o7777);
        let what = format!("write {path}");
        let raw = self
            .exec(
                &["sh", "-c", WRITE_FILE, "sh", path, &mode],
                contents,
                &what,
            )
            .await?;
        self.check(raw, &what).map(|_| ())
    }

    /// Reads the file at `path`.
    pub async fn read_file(&self, path: &str) -> Result<Vec<u8>, RemoteError> {
        let what = format!("read {path}");
        let raw = self.exec(&["cat", "--", path], b"", &what).await?;
        self.check(raw, &what)
    }

    /// Ends the connection (the ssh master exits).
    pub async fn close(self) {
        if let Inner::Ssh { session, .. } = self.inner {
            let _ = session.close().await;
        }
    }

    fn check(&self, raw: Raw, what: &str) -> Result<Vec<u8>, RemoteError> {
        if raw.status != 0 {
            return Err(RemoteError::Command {
                node: self.node.clone(),
                command: what.to_string(),
                status: raw.status,
                stderr: last_lines(&String::from_utf8_lossy(&raw.stderr), STDERR_LINES),
            });
        }
        Ok(raw.stdout)
    }

    /// Runs `argv` on the node with `stdin` as its standard input. `shown` is how the command
    /// appears in errors.
    async fn exec(&self, argv: &[&str], stdin: &[u8], shown: &str) -> Result<Raw, RemoteError> {
        match &self.inner {
            Inner::Local => {
                let local = |e: std::io::Error| RemoteError::Local {
                    node: self.node.clone(),
                    command: shown.to_string(),
                    cause: e.to_string(),
                };
                let (program, args) = argv.split_first().unwrap_or((&"true", &[]));
                let mut child = tokio::process::Command::new(program)
                    .args(args)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(local)?;
                let input = child.stdin.take();
                let feed = async move {
                    if let Some(mut w) = input {
                        // A script that exits without reading all of it closes the pipe: fine.
                        let _ = w.write_all(stdin).await;
                        let _ = w.shutdown().await;
                    }
                };
                let (_, out) = tokio::join!(feed, child.wait_with_output());
                let out = out.map_err(local)?;
                Ok(Raw {
                    status: out.status.code().unwrap_or(-1),
                    stdout: out.stdout,
                    stderr: out.stderr,
                })
            }
            Inner::Ssh { session, .. } => {
                let lost = |e: openssh::Error| RemoteError::Lost {
                    node: self.node.clone(),
                    command: shown.to_string(),
                    cause: chain(&e),
                };
                let (program, args) = argv.split_first().unwrap_or((&"true", &[]));
                let mut cmd = session.command(*program);
                cmd.args(args.iter().copied())
                    .stdin(openssh::Stdio::piped())
                    .stdout(openssh::Stdio::piped())
                    .stderr(openssh::Stdio::piped());
                let mut child = cmd.spawn().await.map_err(lost)?;
                let input = child.stdin().take();
                let feed = async move {
                    if let Some(mut w) = input {
                        let _ = w.write_all(stdin).await;
                        let _ = w.shutdown().await;
                    }
                };
                let (_, out) = tokio::join!(feed, child.wait_with_output());
                let out = out.map_err(lost)?;
                Ok(Raw {
                    status: out.status.code().unwrap_or(-1),
                    stdout: out.stdout,
                    stderr: out.stderr,
                })
            }
        }
    }

    /// The user the session logged in as (`None` for a local target).
    pub fn user(&self) -> Option<&str> {
        match &self.inner {
            Inner::Local => None,
            Inner::Ssh { user, .. } => Some(user),
        }
    }
}

/// An error and its sources on one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
