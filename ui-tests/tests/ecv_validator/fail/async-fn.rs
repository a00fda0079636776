#[cluster2::ecv_validator]
async fn validate(status: u16, body: &[u8]) -> bool {
    status == 200 && !body.is_empty()
}

fn main() {}
