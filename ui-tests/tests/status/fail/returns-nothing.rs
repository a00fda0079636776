#[cluster2::status("connections")]
fn connections() {}

fn main() {}
