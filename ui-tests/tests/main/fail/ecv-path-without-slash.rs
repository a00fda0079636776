#[cluster2::main(ecv(root = "health", monitor = "https://example.com/"))]
async fn main() {}
