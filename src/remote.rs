//! PLACEHOLDER until the `nodes` branch lands (the lead replaces this file with it): the API
//! `bootstrap apply` codes against.

use std::path::PathBuf;
use std::time::Duration;

use crate::failure::FailureClass;

pub enum Target {
    Local,
    Ssh(SshTarget),
}

pub struct SshTarget {
    pub host: String,
    pub user: String,
    pub port: u16,
    pub identity_file: Option<PathBuf>,
    pub config_file: Option<PathBuf>,
}

#[derive(Clone)]
pub struct Script {
    text: String,
    secrets: Vec<String>,
}

impl Script {
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            secrets: Vec::new(),
        }
    }
    pub fn secret(mut self, value: impl Into<String>) -> Self {
        self.secrets.push(value.into());
        self
    }
    pub fn masked(&self) -> String {
        let mut t = self.text.clone();
        for s in &self.secrets {
            t = t.replace(s, "<redacted>");
        }
        t
    }
}

pub struct Output {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("{node}: {cause}")]
    Unreachable { node: String, cause: String },
    #[error("{node}: `{command}` exited with {status}: {stderr}")]
    Command {
        node: String,
        command: String,
        status: i32,
        stderr: String,
    },
}

impl RemoteError {
    pub fn class(&self) -> FailureClass {
        FailureClass::Failed
    }
}

pub struct Session {
    node: String,
}

impl Session {
    pub async fn connect(
        node: &str,
        _target: &Target,
        _timeout: Duration,
    ) -> Result<Session, RemoteError> {
        Ok(Session {
            node: node.to_string(),
        })
    }
    pub async fn run(&self, script: &Script) -> Result<Output, RemoteError> {
        let out = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&script.text)
            .output()
            .await
            .map_err(|e| RemoteError::Unreachable {
                node: self.node.clone(),
                cause: e.to_string(),
            })?;
        Ok(Output {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
    pub async fn run_ok(&self, script: &Script) -> Result<String, RemoteError> {
        let o = self.run(script).await?;
        if o.status != 0 {
            return Err(RemoteError::Command {
                node: self.node.clone(),
                command: script.masked(),
                status: o.status,
                stderr: o.stderr,
            });
        }
        Ok(o.stdout)
    }
    pub async fn write_file(
        &self,
        path: &str,
        contents: &[u8],
        mode: u32,
    ) -> Result<(), RemoteError> {
        let _ = (path, contents, mode);
        Ok(())
    }
    pub async fn read_file(&self, path: &str) -> Result<Vec<u8>, RemoteError> {
        std::fs::read(path).map_err(|e| RemoteError::Unreachable {
            node: self.node.clone(),
            cause: e.to_string(),
        })
    }
    pub async fn close(self) {}
}
