#[cluster2::main(server = "http3")]
async fn main() {}
