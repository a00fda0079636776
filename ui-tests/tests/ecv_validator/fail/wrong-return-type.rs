#[cluster2::ecv_validator]
fn validate(status: u16, body: &[u8]) -> Result<(), String> {
    if status == 200 && !body.is_empty() {
        Ok(())
    } else {
        Err(format!("status {status}"))
    }
}

fn main() {}
