#[cluster2::main(restart(delay = "1s", max = "5s"))]
async fn main() {}
