#[cluster2::main(port = 70000, mon_port = -1)]
async fn main() {}
