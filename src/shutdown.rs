//! A shutdown signal that any number of tasks can wait for: Ctrl-C in the
//! binary, a plain trigger in tests.

use tokio::sync::watch;

/// Fires the [`Shutdown`] it was made with.
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

/// Resolves once the trigger fired (or was dropped). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Shutdown(Option<watch::Receiver<bool>>);

/// A new trigger and the signal it fires.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(Some(rx)))
}

impl Trigger {
    /// Tells every waiter to stop.
    pub fn fire(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// A signal that never fires on its own: for tasks without an end.
    pub fn never() -> Shutdown {
        Shutdown(None)
    }

    /// Whether shutdown has begun.
    pub fn is_set(&self) -> bool {
        self.0.as_ref().is_some_and(|rx| *rx.borrow())
    }

    /// Waits until shutdown begins. Cancel-safe.
    pub async fn wait(&mut self) {
        match &mut self.0 {
            // An error means the trigger is gone: that is a shutdown too.
            Some(rx) => {
                let _ = rx.wait_for(|set| *set).await;
            }
            None => std::future::pending().await,
        }
    }

    /// Waits, consuming the signal: an owned future for APIs that take
    /// `impl Future<Output = ()> + Send + 'static`.
    pub async fn fired(mut self) {
        self.wait().await
    }
}

/// A signal fired by the first Ctrl-C (SIGINT) or SIGTERM.
pub fn on_ctrl_c() -> Shutdown {
    let (trigger, shutdown) = channel();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = ctrl_c => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = ctrl_c.await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
        trigger.fire();
    });
    shutdown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_clone_sees_the_trigger() {
        let (trigger, shutdown) = channel();
        let mut a = shutdown.clone();
        let b = shutdown.clone();
        assert!(!b.is_set());
        let waiter = tokio::spawn(async move { a.wait().await });
        trigger.fire();
        waiter.await.unwrap();
        assert!(b.is_set());
        b.fired().await;
    }
}
