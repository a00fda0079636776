#[cluster2::main(ecv(mode = "probe"), cache(mode = "shared"))]
async fn main() {}
