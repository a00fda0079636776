const DEFAULT_LEVEL: &str = "info";

#[cluster2::status("log-level", update = DEFAULT_LEVEL)]
fn log_level() -> String {
    DEFAULT_LEVEL.to_owned()
}

fn main() {}
