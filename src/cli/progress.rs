//! Progress for people and for logs: a bar with bytes and rate when stderr is a terminal, otherwise
//! one log line per stage (a CronJob's log stays readable).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use crate::snapshot::Progress;
use crate::units::human_bytes;

/// Picks the bar or the log lines.
pub fn for_stderr(quiet: bool) -> Box<dyn Progress> {
    if std::io::stderr().is_terminal() && !quiet {
        Box::new(Bar {
            bar: Mutex::new(None),
        })
    } else {
        Box::new(LogLines {
            state: Mutex::new(None),
        })
    }
}

struct Bar {
    bar: Mutex<Option<ProgressBar>>,
}

impl Progress for Bar {
    fn stage(&self, name: &str, total: Option<u64>) {
        let bar = match total {
            Some(t) => ProgressBar::new(t),
            None => ProgressBar::new_spinner(),
        };
        let style = ProgressStyle::with_template(
            "{msg:>10} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(name.to_string());
        if let Ok(mut b) = self.bar.lock() {
            *b = Some(bar);
        }
    }

    fn advance(&self, bytes: u64) {
        if let Ok(b) = self.bar.lock() {
            if let Some(b) = b.as_ref() {
                b.inc(bytes);
            }
        }
    }

    fn done(&self, summary: &str) {
        if let Ok(mut b) = self.bar.lock() {
            if let Some(b) = b.take() {
                b.finish_and_clear();
            }
        }
        tracing::info!("{summary}");
    }
}

struct LogLines {
    state: Mutex<Option<(String, Instant, u64)>>,
}

impl Progress for LogLines {
    fn stage(&self, name: &str, total: Option<u64>) {
        match total {
            Some(t) => tracing::info!(stage = name, bytes = t, "{name}: {} to go", human_bytes(t)),
            None => tracing::info!(stage = name, "{name}: started"),
        }
        if let Ok(mut s) = self.state.lock() {
            *s = Some((name.to_string(), Instant::now(), 0));
        }
    }

    fn advance(&self, bytes: u64) {
        if let Ok(mut s) = self.state.lock() {
            if let Some(s) = s.as_mut() {
                s.2 += bytes;
            }
        }
    }

    fn done(&self, summary: &str) {
        if let Ok(mut s) = self.state.lock() {
            if let Some((name, started, bytes)) = s.take() {
                let secs = started.elapsed().as_secs_f64().max(1e-6);
                tracing::info!(
                    stage = %name,
                    bytes,
                    seconds = secs,
                    "{summary}: {} in {secs:.1} s ({}/s)",
                    human_bytes(bytes),
                    human_bytes((bytes as f64 / secs) as u64)
                );
                return;
            }
        }
        tracing::info!("{summary}");
    }
}
