// `max_memory` is checked against its range when the binary is built, as on the command line.
#[cluster2::main(max_memory = "1KiB")]
async fn main() {}
