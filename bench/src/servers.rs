//! The servers under test and how to start them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cli::Config;
use crate::proc::{Proc, Ready};

/// Where the programs are.
#[derive(Debug, Clone)]
pub(crate) struct Bins {
    pub(crate) hello: PathBuf,
    pub(crate) bare_hyper: PathBuf,
    pub(crate) emitter_bench: PathBuf,
    pub(crate) cache_bench: PathBuf,
    pub(crate) fanout_bench: PathBuf,
    pub(crate) node_ipc_script: PathBuf,
    pub(crate) node: PathBuf,
    pub(crate) node_script: PathBuf,
}

impl Bins {
    /// `hello` and `bare-hyper` are looked for next to this program, in the same target
    /// directory.
    pub(crate) fn find(config: &Config) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
        let dir = exe.parent().unwrap_or(Path::new("."));
        let hello = dir.join("hello");
        let bare_hyper = dir.join("bare-hyper");
        let emitter_bench = dir.join("emitter-bench");
        let cache_bench = dir.join("cache-bench");
        let fanout_bench = dir.join("fanout-bench");
        let missing: Vec<String> = [
            &hello,
            &bare_hyper,
            &emitter_bench,
            &cache_bench,
            &fanout_bench,
        ]
        .into_iter()
        .filter(|p| !p.is_file())
        .map(|p| p.display().to_string())
        .collect();
        if !missing.is_empty() {
            return Err(format!(
                "missing {}; build them first: cargo build --release -p example-hello -p \
                 cluster2-bench",
                missing.join(" and ")
            ));
        }
        if !config.node_script.is_file() {
            return Err(format!(
                "the node peer {} is missing (--node-script)",
                config.node_script.display()
            ));
        }
        Ok(Self {
            hello,
            bare_hyper,
            emitter_bench,
            cache_bench,
            fanout_bench,
            node_ipc_script: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/node/ipc-rtt.js")),
            node: config.node.clone(),
            node_script: config.node_script.clone(),
        })
    }

    /// cluster2's `hello` example on free ports.
    pub(crate) fn hello(&self, workers: usize, extra: &[&str]) -> Server {
        let mut args = vec![
            format!("--workers={workers}"),
            "--port=0".to_owned(),
            "--mon-port=0".to_owned(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let shown = if extra.is_empty() {
            String::new()
        } else {
            format!(" {}", extra.join(" "))
        };
        Server {
            label: format!("cluster2 hello --workers={workers}{shown}"),
            program: self.hello.clone(),
            args,
            cpus: None,
            wrk_cpus: None,
        }
    }

    /// node's cluster module with `workers` workers on a free port.
    pub(crate) fn node(&self, workers: usize) -> Server {
        Server {
            label: format!("node cluster, {workers} workers"),
            program: self.node.clone(),
            args: vec![
                self.node_script.display().to_string(),
                workers.to_string(),
                "0".to_owned(),
            ],
            cpus: None,
            wrk_cpus: None,
        }
    }

    /// The single-process hyper baseline, with `bare-hyper`'s switches `extra`.
    pub(crate) fn bare_hyper(&self, extra: &[&str]) -> Server {
        let mut label = "bare hyper (1 process)".to_owned();
        let mut args = vec!["--port=0".to_owned()];
        for arg in extra {
            label.push(' ');
            label.push_str(arg);
            args.push((*arg).to_owned());
        }
        Server {
            label,
            program: self.bare_hyper.clone(),
            args,
            cpus: None,
            wrk_cpus: None,
        }
    }
}

/// One server configuration.
#[derive(Debug, Clone)]
pub(crate) struct Server {
    pub(crate) label: String,
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<String>,
    /// The CPUs it runs on, a `taskset -c` list; none: wherever the scheduler puts it.
    pub(crate) cpus: Option<String>,
    /// The CPUs wrk runs on against it; none: `--wrk-cpus`, or anywhere.
    pub(crate) wrk_cpus: Option<String>,
}

/// A started server.
#[derive(Debug)]
pub(crate) struct Running {
    pub(crate) proc: Proc,
    pub(crate) ready: Ready,
    /// From just before the exec to the "ready" line.
    pub(crate) startup: Duration,
}

impl Server {
    /// This server on `cpus` (a `taskset -c` list) and wrk on `wrk_cpus`, unless it has its own.
    pub(crate) fn placed(mut self, cpus: Option<&str>, wrk_cpus: Option<&str>) -> Self {
        if self.cpus.is_none() {
            self.cpus = cpus.map(str::to_owned);
        }
        if self.wrk_cpus.is_none() {
            self.wrk_cpus = wrk_cpus.map(str::to_owned);
        }
        self
    }

    pub(crate) async fn start(&self, timeout: Duration) -> Result<Running, String> {
        let start = Instant::now();
        let mut proc = match &self.cpus {
            // taskset executes the server in its own process: the pid is the server's.
            Some(cpus) => {
                let mut args = vec![
                    "-c".into(),
                    cpus.into(),
                    self.program.clone().into_os_string(),
                ];
                args.extend(self.args.iter().map(Into::into));
                Proc::spawn::<std::ffi::OsString>(&self.label, "taskset", &args)?
            }
            None => Proc::spawn(&self.label, &self.program, &self.args)?,
        };
        let ready = proc.wait_ready(timeout).await?;
        Ok(Running {
            startup: ready.at.saturating_duration_since(start),
            proc,
            ready,
        })
    }
}
