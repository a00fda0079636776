#[cluster2::main(port = 9090)]
struct Server;

fn main() {}
