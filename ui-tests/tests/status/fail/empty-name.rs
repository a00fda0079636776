#[cluster2::status("")]
fn connections() -> u64 {
    0
}

fn main() {}
