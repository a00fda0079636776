#[cluster2::status("connections")]
fn connections(scale: u64) -> u64 {
    scale
}

fn main() {}
