#[cluster2::main(workers = 0)]
async fn main() {}
