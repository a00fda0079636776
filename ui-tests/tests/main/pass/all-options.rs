mod cluster {
    #[cluster2::main(
        port = 0,
        host = "::",
        mon_port = 0,
        mon_host = "localhost",
        mon(max_connections = 64),
        workers = 2,
        threads = 0,
        warm_up_port = 19000,
        heartbeat_interval = "1.5s",
        startup_timeout = "1m 30s",
        stop_timeout = "2 mins",
        server = "http1",
        backlog = 128,
        header_timeout = "10s",
        max_connections = 1000,
        restart(delay = "100ms", max_delay = "30s"),
        log(level = "warn,my_app=debug"),
        ecv(
            mode = "monitor",
            root = "/health",
            mark_up = "/health/up",
            mark_down = "/health/down",
            monitor = "http://127.0.0.1:8080/ping",
            timeout = "500ms",
            expect_status = 204,
            expect_body = "pong",
            up_body = "up",
            down_body = "down",
            drain_delay = "0"
        ),
        max_age = "never",
        max_requests = 10000,
        max_requests_jitter = 500,
        max_memory = "512MiB",
        nanny(enable = false, tolerance = "1m"),
        death_queue(timeout = "2m", retries = 5),
        pids = "/run/my-app",
        cluster_name = "my-app.eu_1",
        cache(
            enable = true,
            mode = "master",
            persist_path = "/var/cache/my-app",
            max_value = 1073741824,
            max_memory = "1.5GiB",
            max_connections = 256,
            timeout = "250ms",
            max_lease = "30s",
            backend = "redis://10.0.0.5:6379/2"
        ),
        emitter(backend = "rediss://:secret@redis.example:6380/0")
    )]
    pub(crate) async fn main(started: cluster2::Started) {
        let _ = started.options();
    }
}

// A duration is as good as `never`; zero is allowed where the runtime allows it.
mod durations {
    #[cluster2::main(max_age = "3d 12h", stop_timeout = "0s", ecv(timeout = "0ms"))]
    pub(crate) async fn main() {}
}

fn main() {
    let _: fn() -> std::process::ExitCode = cluster::main;
    let _: fn() -> std::process::ExitCode = durations::main;
}
