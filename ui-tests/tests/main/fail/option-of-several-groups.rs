#[cluster2::main(timeout = "5s")]
async fn main() {}
