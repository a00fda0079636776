// A size needs a unit the runtime knows; the macro names the units when the binary is built.
#[cluster2::main(cache(max_memory = "512 megs"))]
async fn main() {}
