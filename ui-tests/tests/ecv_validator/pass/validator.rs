#[cluster2::ecv_validator]
fn validate(status: u16, body: &[u8]) -> bool {
    status == 200 && body.starts_with(b"ok")
}

fn main() {
    let registered = &cluster2::__private::ECV_VALIDATOR;
    assert_eq!(registered.len(), 1);
    assert!((registered[0].func)(200, b"ok: 3 workers"));
    assert!(!(registered[0].func)(503, b"ok"));
}
