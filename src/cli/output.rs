//! The one place that turns a typed report into text: a table for people, JSON for programs. Commands
//! hand their report to [`Renderer::print`] and never choose a format themselves.

use std::io::Write;

use serde::Serialize;

pub use super::global::OutputFormat;

/// A report that can be shown as a table; JSON comes from its `Serialize` impl.
pub trait Render: Serialize {
    fn table(&self) -> String;
}

/// Prints reports in the format the user chose.
#[derive(Debug, Clone, Copy)]
pub struct Renderer {
    format: OutputFormat,
}

impl Renderer {
    pub fn new(format: OutputFormat) -> Self {
        Self { format }
    }

    /// Writes the report to stdout.
    pub fn print<T: Render>(&self, report: &T) -> anyhow::Result<()> {
        let text = self.render(report)?;
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()?;
        Ok(())
    }

    /// The report as text in the chosen format, ending with a newline.
    pub fn render<T: Render>(&self, report: &T) -> anyhow::Result<String> {
        Ok(match self.format {
            OutputFormat::Table => {
                let mut t = report.table();
                if !t.ends_with('\n') {
                    t.push('\n');
                }
                t
            }
            OutputFormat::Json => serde_json::to_string_pretty(report)? + "\n",
        })
    }
}
