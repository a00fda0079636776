#[cluster2::status("connections")]
static CONNECTIONS: u64 = 0;

fn main() {}
