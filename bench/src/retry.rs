//! Measuring a run again when other processes disturbed it: one rule for every benchmark,
//! and the two counts each report states.

use std::time::Duration;

/// Runs measured again, and runs kept although disturbed (out of retries).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Disturbance {
    pub(crate) redone: usize,
    pub(crate) kept: usize,
}

impl Disturbance {
    /// The report's line on disturbed runs, for benchmarks whose runs other processes that
    /// keep more than `max_other` CPUs busy disturb.
    pub(crate) fn summary(&self, max_other: f64) -> String {
        format!(
            "Runs measured again because other processes kept more than {max_other} CPUs busy: \
             {}; kept although disturbed: {}.",
            self.redone, self.kept
        )
    }

    /// After a measured run: whether to measure it again — it was disturbed (`noisy`) and
    /// fewer than `retries` attempts were made — after a second's pause for the disturbance
    /// to pass. Otherwise the run is kept, and counted when it was disturbed.
    pub(crate) async fn measure_again(
        &mut self,
        noisy: bool,
        attempt: &mut usize,
        retries: usize,
    ) -> bool {
        if noisy && *attempt < retries {
            *attempt += 1;
            self.redone += 1;
            tokio::time::sleep(Duration::from_secs(1)).await;
            return true;
        }
        self.kept += usize::from(noisy);
        false
    }
}
