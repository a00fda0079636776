// tracing would read `verbose` as a target name: a filter that matches nothing.
#[cluster2::main(log(level = "verbose"))]
async fn main() {}
