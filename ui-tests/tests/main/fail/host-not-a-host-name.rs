#[cluster2::main(host = "localhost", mon_host = "monitor.internal")]
async fn main() {}
