// Sizes are text (`"512MiB"`); a number of bytes is too, and the macro writes it for you.
#[cluster2::main(cache(max_memory = 536870912))]
async fn main() {}
