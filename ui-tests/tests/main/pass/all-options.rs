mod cluster {
    #[cluster2::main(
        port = 0,
        host = "::",
        mon_port = 0,
        mon_host = "::",
        workers = 2,
        threads = 0,
        warm_up_port = 19000,
        heartbeat_interval = "1.5s",
        startup_timeout = "1m 30s",
        stop_timeout = "2 mins",
        server = "http1",
        backlog = 128,
        restart(delay = "100ms", max_delay = "30s"),
        log(level = "warn,my_app=debug")
    )]
    pub(crate) async fn main(started: cluster2::Started) {
        let _ = started.options();
    }
}

fn main() {
    let _: fn() -> std::process::ExitCode = cluster::main;
}
