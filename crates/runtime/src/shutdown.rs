//! Graceful shutdown: the first SIGTERM or SIGINT cancels the returned token (services stop
//! taking work, finish or hand back what they hold, flush, exit 0); a second one exits at once.

use tokio_util::sync::CancellationToken;

/// A token cancelled by the first SIGTERM/SIGINT. Must be called inside a tokio runtime.
pub fn on_signal() -> CancellationToken {
    on_signal_then(|| {})
}

/// Like [`on_signal`]; `before_exit` runs on the second signal, just before the process exits
/// at once. No destructor runs then, so whatever must not outlive the process (a child process
/// it started) is stopped here.
pub fn on_signal_then(before_exit: impl FnOnce() + Send + 'static) -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        // Listening starts once, here: a second signal arriving while the first is handled
        // is not missed.
        let mut signals = Signals::new();
        signals.recv().await;
        tracing::info!("shutdown requested; finishing in-flight work (signal again to exit at once)");
        t.cancel();
        signals.recv().await;
        tracing::warn!("second signal: exiting now");
        before_exit();
        std::process::exit(130);
    });
    token
}

struct Signals {
    #[cfg(unix)]
    streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Self { streams: signal(SignalKind::terminate()).ok().zip(signal(SignalKind::interrupt()).ok()) }
        }
        #[cfg(not(unix))]
        {
            Self {}
        }
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some((term, int)) = &mut self.streams {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}
