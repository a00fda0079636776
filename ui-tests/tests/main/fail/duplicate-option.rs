#[cluster2::main(port = 9090, workers = 2, port = 9091)]
async fn main() {}
