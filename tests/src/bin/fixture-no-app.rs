//! A binary with no `#[configure_app]` function: start-up must say what is missing.

#[cluster2::main(port = 0, mon_port = 0, workers = 1)]
async fn main() {}
