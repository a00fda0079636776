#[cluster2::main]
async fn main() -> i32 {
    0
}
