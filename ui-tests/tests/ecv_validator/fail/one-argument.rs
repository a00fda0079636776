#[cluster2::ecv_validator]
fn validate(status: u16) -> bool {
    status == 200
}

fn main() {}
