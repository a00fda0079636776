#[cluster2::status(connections)]
fn connections() -> u64 {
    0
}

fn main() {}
