//! SIGINT and SIGTERM as a cancellation, for commands that must undo what they started (a snapshot
//! upload in progress) rather than die with it: a CronJob's pod gets SIGTERM at its
//! `activeDeadlineSeconds`, and a killed upload would leave an open multipart upload behind;
//! `backup --follow` stores the segment it holds before it exits. A
//! second signal ends the process at once, for a user who will not wait for the cleanup.

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// A token cancelled at the first SIGINT or SIGTERM. Must be called inside the runtime; when the
/// handlers cannot be installed the token is simply never cancelled (the default actions stay).
pub fn cancel_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return token;
    };
    let t = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::warn!("SIGTERM: stopping (a snapshot upload in progress is aborted; backup --follow stores what it holds); a second signal ends at once"),
            _ = int.recv() => tracing::warn!("SIGINT: stopping (a snapshot upload in progress is aborted; backup --follow stores what it holds); a second signal ends at once"),
        }
        t.cancel();
        tokio::select! {
            _ = term.recv() => std::process::exit(143),
            _ = int.recv() => std::process::exit(130),
        }
    });
    token
}
