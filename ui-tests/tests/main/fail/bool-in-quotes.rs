#[cluster2::main(nanny(enable = "false"), cache(enable = 1), pids = "")]
async fn main() {}
