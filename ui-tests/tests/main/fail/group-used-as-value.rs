#[cluster2::main(restart = "1s", workers = 0)]
async fn main() {}
