#[cluster2::main(port(9090))]
async fn main() {}
