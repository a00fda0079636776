#[cluster2::main(workers, port = 70000)]
async fn main() {}
