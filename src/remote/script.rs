//! A shell script with the secrets it contains, masked wherever it is shown.

use std::fmt;

/// What a secret is replaced by when a script or an output is shown.
pub const REDACTED: &str = "<redacted>";

/// A command line (a `sh` script) with the secrets it contains. `Display` and `Debug` mask every
/// secret as `<redacted>`; the text itself is only handed to the shell that runs it.
#[derive(Clone, PartialEq, Eq)]
pub struct Script {
    text: String,
    secrets: Vec<String>,
}

impl Script {
    /// A script with no secrets yet.
    pub fn new(text: impl Into<String>) -> Self {
        Script {
            text: text.into(),
            secrets: Vec::new(),
        }
    }

    /// Declares `value` a secret of this script: masked wherever the script or its output is
    /// shown. An empty value masks nothing.
    pub fn secret(mut self, value: impl Into<String>) -> Self {
        let value = value.into();
        if !value.is_empty() && !self.secrets.contains(&value) {
            self.secrets.push(value);
            // Longest first, so a secret containing another is masked whole.
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
        self
    }

    /// The script with every secret replaced by `<redacted>`.
    pub fn masked(&self) -> String {
        self.mask(&self.text)
    }

    /// `text` (an output of this script, say) with this script's secrets replaced.
    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), REDACTED);
            }
        }
        out
    }

    /// The unmasked text, for the shell only.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Debug for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Script")
            .field("text", &self.masked())
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_debug_and_masked_hide_every_secret() {
        let s =
            Script::new("kubeadm join --token abcdef.0123456789abcdef --certificate-key ff00ff")
                .secret("abcdef.0123456789abcdef")
                .secret("ff00ff");
        let want = "kubeadm join --token <redacted> --certificate-key <redacted>";
        assert_eq!(s.masked(), want);
        assert_eq!(s.to_string(), want);
        let dbg = format!("{s:?}");
        assert!(
            !dbg.contains("abcdef.0123456789abcdef") && !dbg.contains("ff00ff"),
            "{dbg}"
        );
        assert_eq!(
            s.text(),
            "kubeadm join --token abcdef.0123456789abcdef --certificate-key ff00ff"
        );
    }

    #[test]
    fn a_secret_containing_another_is_masked_whole() {
        let s = Script::new("echo abc abcdef")
            .secret("abc")
            .secret("abcdef");
        assert_eq!(s.masked(), "echo <redacted> <redacted>");
    }

    #[test]
    fn every_occurrence_is_masked_and_empty_secrets_mask_nothing() {
        let s = Script::new("a=xyz; b=xyz").secret("xyz").secret("");
        assert_eq!(s.masked(), "a=<redacted>; b=<redacted>");
        assert_eq!(
            s.mask("out: xyz\nerr: xyz"),
            "out: <redacted>\nerr: <redacted>"
        );
        assert_eq!(Script::new("echo hi").masked(), "echo hi");
    }
}
