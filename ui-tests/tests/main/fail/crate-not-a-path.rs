#[cluster2::main(crate = "not a path")]
async fn main() {}
