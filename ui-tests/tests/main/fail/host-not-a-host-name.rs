#[cluster2::main(host = "my host", mon_host = "http://monitor.internal")]
async fn main() {}
