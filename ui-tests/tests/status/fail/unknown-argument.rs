#[cluster2::status("connections", refresh = "1s", port = 8080)]
fn connections() -> u64 {
    0
}

fn main() {}
