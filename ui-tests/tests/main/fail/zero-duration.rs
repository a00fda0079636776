// The runtime rejects these at start-up; the macro rejects them when the binary is built.
#[cluster2::main(
    heartbeat_interval = "0",
    startup_timeout = 0,
    nanny(tolerance = "0s"),
    death_queue(timeout = "0ms"),
    cache(timeout = "0.0s")
)]
async fn main() {}
