#[cluster2::main(delay = "200ms")]
async fn main() {}
