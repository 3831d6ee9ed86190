//! The job a message works on, as the engine carries it through a step.

use serde_json::Value;

use crate::model::{JobId, JobStatus};
use crate::store::{self, GenericClient, StoreError};
use crate::telemetry::checkpoints as cp;

/// The job a stage belongs to.
#[derive(Debug, Clone)]
pub(crate) struct JobCtx {
    pub job_id: JobId,
    pub job_type: String,
    pub params: Value,
    pub total_stages: i32,
    pub attempt: i32,
    pub correlation_id: Option<String>,
    pub traceparent: Option<String>,
}

impl JobCtx {
    /// The checkpoint fields naming this job.
    pub(crate) fn fields(&self) -> cp::Fields {
        cp::Fields::job(&self.job_id)
            .job_type(&self.job_type)
            .attempt(self.attempt)
            .correlation(self.correlation_id.as_deref())
    }

    /// [`JobCtx::load`] by an id as text from a message or a row: text that is not a job id names
    /// no job (the table's CHECK admits only 64 lowercase hex characters).
    pub(crate) async fn load_named(
        c: &impl GenericClient,
        job_id: &str,
    ) -> Result<Option<(JobCtx, JobStatus, i32)>, StoreError> {
        match JobId::parse(job_id) {
            Ok(id) => Self::load(c, &id).await,
            Err(_) => Ok(None),
        }
    }

    /// Reads the job: its context, status and current stage (`None`: it does not exist).
    pub(crate) async fn load(
        c: &impl GenericClient,
        job_id: &JobId,
    ) -> Result<Option<(JobCtx, JobStatus, i32)>, StoreError> {
        Ok(store::jobs::get(c, job_id).await?.map(|r| {
            (
                JobCtx {
                    job_id: r.job_id,
                    job_type: r.job_type,
                    params: r.parameters,
                    total_stages: r.total_stages,
                    attempt: r.attempt,
                    correlation_id: r.correlation_id,
                    traceparent: r.traceparent,
                },
                r.status,
                r.stage,
            )
        }))
    }
}
