#[cluster2::main(stop_timeout = "30", restart(delay = "fast"))]
async fn main() {}
