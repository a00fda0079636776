#[cluster2::main(max_age = "forever")]
async fn main() {}
