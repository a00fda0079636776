// Values passed through `macro_rules!` arrive wrapped in invisible groups.
macro_rules! cluster_main {
    ($port:expr, $delay:expr) => {
        mod cluster {
            #[cluster2::main(port = $port, restart(delay = $delay))]
            pub(crate) async fn main() {}
        }
    };
}

cluster_main!(9090, "250ms");

fn main() {
    let _: fn() -> std::process::ExitCode = cluster::main;
}
