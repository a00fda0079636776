#[cluster2::main(prot = 9090)]
async fn main() {}
