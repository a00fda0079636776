mod cluster {
    #[cluster2::main]
    pub(crate) async fn main() {
        tracing::info!("up");
    }
}

fn main() {
    let _: fn() -> std::process::ExitCode = cluster::main;
}
