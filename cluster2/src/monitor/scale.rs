//! `POST /workers/scale`: the number of workers, changed at run time. The body is a JSON
//! object with exactly one of `workers` (how many from now on) or `delta` (how many more, or
//! fewer when negative); anything else is a 400 naming the field and what is valid. The
//! answer is `{"from": N, "to": M}`, given once the change has started (new workers warming
//! up, retired ones draining); `/workers` and `/events` show it finish.

use axum::Json;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::errors::{error, from_error};

/// What a body asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Asked {
    /// `{"workers": N}`.
    To(usize),
    /// `{"delta": N}`.
    By(i64),
}

const SHAPE: &str = r#"{"workers": N} or {"delta": N} (N negative to shrink)"#;

/// Reads a body, or says what is wrong with it, naming the field.
pub(crate) fn parse(body: &[u8]) -> Result<Asked, String> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| format!("the body is not JSON ({e}): send {SHAPE}"))?;
    let Value::Object(fields) = value else {
        return Err(format!("the body must be a JSON object: {SHAPE}"));
    };
    if let Some(other) = fields.keys().find(|k| *k != "workers" && *k != "delta") {
        return Err(format!("unknown field `{other}`: send {SHAPE}"));
    }
    match (fields.get("workers"), fields.get("delta")) {
        (Some(_), Some(_)) => Err(format!(
            "`workers` and `delta` together: send one of them, {SHAPE}"
        )),
        (None, None) => Err(format!("no `workers` or `delta` field: send {SHAPE}")),
        (Some(n), None) => n
            .as_u64()
            .filter(|&n| n >= 1)
            .and_then(|n| usize::try_from(n).ok())
            .map(Asked::To)
            .ok_or_else(|| format!("`workers` must be a whole number of at least 1, not {n}")),
        (None, Some(d)) => d
            .as_i64()
            .filter(|&d| d != 0)
            .map(Asked::By)
            .ok_or_else(|| {
                format!("`delta` must be a whole number other than 0 (+1, -1, …), not {d}")
            }),
    }
}

pub(super) async fn serve(body: Bytes) -> Response {
    let asked = match parse(&body) {
        Ok(asked) => asked,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let result = match asked {
        Asked::To(n) => crate::master::scale(n).await,
        Asked::By(d) => crate::master::scale_by(d).await,
    };
    match result {
        Ok(scaled) => Json(json!({ "from": scaled.from, "to": scaled.to })).into_response(),
        Err(e) => from_error(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        assert_eq!(parse(br#"{"workers": 3}"#), Ok(Asked::To(3)));
        assert_eq!(parse(br#"{"delta": -1}"#), Ok(Asked::By(-1)));
        assert_eq!(parse(br#"{"delta": 2}"#), Ok(Asked::By(2)));
        for (body, names) in [
            (&br#"{"workers": 0}"#[..], "`workers`"),
            (br#"{"workers": -2}"#, "`workers`"),
            (br#"{"workers": "3"}"#, "`workers`"),
            (br#"{"workers": 2.5}"#, "`workers`"),
            (br#"{"delta": 0}"#, "`delta`"),
            (br#"{"delta": "+1"}"#, "`delta`"),
            (br#"{"workers": 2, "delta": 1}"#, "together"),
            (br#"{"worker": 2}"#, "`worker`"),
            (br#"{}"#, "no `workers`"),
            (br#"[3]"#, "JSON object"),
            (b"three", "not JSON"),
            (b"", "not JSON"),
        ] {
            let e = parse(body).unwrap_err();
            assert!(e.contains(names), "{}: {e}", String::from_utf8_lossy(body));
        }
    }
}
