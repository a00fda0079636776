// The runtime caps the cache manager's spin at 1ms; the macro says so when the binary is built.
#[cluster2::main(cache(spin = "5ms"))]
async fn main() {}
