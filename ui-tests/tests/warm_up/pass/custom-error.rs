use std::fmt;

#[derive(Debug)]
struct Cold(String);

impl fmt::Display for Cold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cache not warm: {}", self.0)
    }
}

#[cluster2::warm_up]
async fn warm(w: cluster2::WarmUp) -> Result<(), Cold> {
    w.get("/").await.map_err(|e| Cold(e.to_string()))?;
    Ok(())
}

fn main() {}
