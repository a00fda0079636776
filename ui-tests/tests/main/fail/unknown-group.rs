#[cluster2::main(restrat(delay = "1s"), workers = 0)]
async fn main() {}
