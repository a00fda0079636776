mod cluster {
    #[cluster2::main(workers = 2)]
    pub(crate) async fn main(started: cluster2::Started) -> Result<(), std::io::Error> {
        let pid_file = std::env::temp_dir().join(format!("app-{}.pid", started.pid()));
        std::fs::write(pid_file, started.pid().to_string())?;
        Ok(())
    }
}

fn main() {
    let _: fn() -> std::process::ExitCode = cluster::main;
}
