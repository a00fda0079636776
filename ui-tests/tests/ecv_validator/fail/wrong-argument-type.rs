#[cluster2::ecv_validator]
fn validate(status: u16, body: &str) -> bool {
    status == 200 && body.contains("ok")
}

fn main() {}
