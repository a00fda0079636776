//! A small steady load for tests that change the cluster under traffic (scaling, reloads):
//! `GET /` on a fresh connection, one after another, until stopped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

use crate::get;

/// Requests on fresh connections, one after another, until stopped: how many were answered
/// 200 and how many failed (an error or another status), and the failures' words.
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    thread: Option<JoinHandle<Vec<String>>>,
}

impl Load {
    /// Starts sending to the application port `app`.
    pub fn start(app: SocketAddr) -> Self {
        let (stop, ok) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let (stop2, ok2) = (stop.clone(), ok.clone());
        let thread = std::thread::spawn(move || {
            let mut failures = Vec::new();
            while !stop2.load(Ordering::Relaxed) {
                match get(app, "/") {
                    Ok(r) if r.status == 200 => {
                        ok2.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => failures.push(format!("status {}: {}", r.status, r.body)),
                    Err(e) => failures.push(e.to_string()),
                }
            }
            failures
        });
        Self {
            stop,
            ok,
            thread: Some(thread),
        }
    }

    /// Stops it: how many requests were answered, and the failures.
    pub fn finish(mut self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let failures = self.thread.take().unwrap().join().unwrap();
        (self.ok.load(Ordering::Relaxed), failures)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
