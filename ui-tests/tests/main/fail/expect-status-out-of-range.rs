#[cluster2::main(ecv(expect_status = 99), cache(max_value = 0))]
async fn main() {}
