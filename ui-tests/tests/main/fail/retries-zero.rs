#[cluster2::main(death_queue(retries = 0))]
async fn main() {}
