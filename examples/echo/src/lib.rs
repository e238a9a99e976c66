//! `echo`: completes every job with its data, unchanged.

use bullpen_guest::{Job, Processor, Result};

struct Echo;

impl Processor for Echo {
    fn process(job: Job) -> Result<impl serde::Serialize> {
        Ok(job.raw_data())
    }
}

bullpen_guest::export!(Echo);
