mod cluster {
    #[cluster2::main(restart(delay = "200ms", max_delay = "5s"), log(level = "debug"))]
    pub(crate) async fn main() {}
}

fn main() {
    let _: fn() -> std::process::ExitCode = cluster::main;
}
