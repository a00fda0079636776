#[cluster2::status("connections")]
async fn connections() -> u64 {
    0
}

fn main() {}
