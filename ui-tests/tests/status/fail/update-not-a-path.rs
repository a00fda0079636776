#[cluster2::status("log-level", update = |level: String| level)]
fn log_level() -> String {
    "info".to_owned()
}

fn main() {}
