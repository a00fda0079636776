#[cluster2::main(port = "9090", workers = 2.5, host = 127, stop_timeout = 30)]
async fn main() {}
