#[cluster2::main(backlog = 5_000_000_000, threads = 99999999999999999999)]
async fn main() {}
