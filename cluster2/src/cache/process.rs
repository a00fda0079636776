//! The standalone cache manager process: this binary re-executed by the master with the cache
//! role marker. It serves the cache until the master tells it to stop or goes away.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use super::busy_poll::BusyPoll;
use super::manager::{Manager, ManagerConfig, bind};
use crate::ipc::channel;
use crate::ipc::child::{self, Inherited};
use crate::ipc::message::{ToMaster, ToWorker};

pub(crate) fn run() -> ExitCode {
    match serve() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: cache manager: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve() -> Result<ExitCode, String> {
    let Inherited { hello, channel } = child::start()?;
    crate::log::init(
        crate::log::Who::Cache,
        &hello.options.log.level,
        hello.options.log.format,
    );
    let socket = hello
        .cache_socket
        .ok_or("the master sent no cache socket path")?;
    let poll = Arc::new(
        BusyPoll::new(hello.options.cache.spin)
            .map_err(|e| format!("cannot set up the idle spin: {e}"))?,
    );
    let (before_sleep, after_wake) = (poll.clone(), poll.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(move || before_sleep.before_sleep())
        .on_thread_unpark(move || after_wake.after_wake())
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    channel.set_nonblocking(true).map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let config = ManagerConfig::from_options(&hello.options.cache);
        let manager = Manager::load(config)
            .map_err(|e| {
                format!(
                    "cannot reload the cache from {}: {e}",
                    hello.options.cache.persist_path
                )
            })?
            .with_busy_poll(poll);
        let listener =
            bind(&socket).map_err(|e| format!("cannot listen on {}: {e}", socket.display()))?;
        let stop = CancellationToken::new();
        let served = tokio::spawn(manager.serve(listener, stop.clone()));
        let channel = tokio::net::UnixStream::from_std(channel).map_err(|e| e.to_string())?;
        let (to_master, mut from_master, _writer) = channel::channel::<ToMaster, ToWorker>(channel);
        let _ = to_master.send(&ToMaster::Listening).await;
        let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
        let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
        loop {
            tokio::select! {
                msg = from_master.recv() => match msg {
                    Ok(Some(ToWorker::Stop)) | Ok(None) | Err(_) => break,
                    Ok(Some(ToWorker::Logs(control))) => crate::log::control(control, &to_master),
                    Ok(Some(ToWorker::Profile { id, seconds, format })) => {
                        crate::worker::profile::answer(id, seconds, format, to_master.clone());
                    }
                    Ok(Some(_)) => {}
                },
                _ = term.recv() => break,
                // A terminal's Ctrl-C reaches the whole group; the master decides.
                _ = int.recv() => {}
            }
        }
        stop.cancel();
        // The manager syncs its logs as it stops.
        let _ = tokio::time::timeout(Duration::from_secs(2), served).await;
        Ok::<_, String>(ExitCode::SUCCESS)
    })
}
