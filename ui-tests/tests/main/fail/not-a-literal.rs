const PORT: u16 = 9090;

#[cluster2::main(port = PORT)]
async fn main() {}
