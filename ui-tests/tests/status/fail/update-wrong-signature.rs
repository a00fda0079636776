#[cluster2::status("log-level", update = set_level)]
fn log_level() -> String {
    "info".to_owned()
}

fn set_level(level: String, force: bool) -> String {
    let _ = force;
    level
}

fn main() {}
