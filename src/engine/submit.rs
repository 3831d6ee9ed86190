//! Submit: validate, derive the content-addressed job id, and create the job with its stage 1
//! message in one transaction. Submitting the same job again returns the existing one.
//!
//! A caller that must record something of its own with the job (the platform layer's request
//! row) passes a [`SubmitRecord`]: it is written in the same transaction, so neither exists
//! without the other.

use serde_json::{Value, json};

use super::Engine;
use super::events::{self, Event, EventStatus};
use super::ids::JobId;
use super::messages::JobMessage;
use crate::jobs::{FieldError, params};
use crate::store::{self, QueryContext, StoreError, Transaction, sql};
use crate::telemetry::checkpoints as cp;
use crate::transport::outbox::Outbox;

/// A submitted (or already existing) job.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Submitted {
    /// Job id.
    pub job_id: String,
    /// Job type.
    pub job_type: String,
    /// Whether the job existed already.
    pub idempotent: bool,
    /// Current status.
    pub status: String,
    /// Current stage.
    pub stage: i32,
    /// Number of stages.
    pub total_stages: i32,
    /// Validated parameters.
    pub parameters: Value,
    /// Correlation id.
    pub correlation_id: Option<String>,
    /// Result, when the existing job is complete.
    pub result_data: Option<Value>,
    /// Error, when the existing job failed.
    pub error_details: Option<String>,
    /// Creation time.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Queue the stage 1 message went to.
    pub queue_name: String,
    /// An existing job: the submitted parameters that are not part of the job id and differ from
    /// the job's own (they were ignored: the job keeps its values).
    pub ignored_parameters: Vec<String>,
    /// MessageId of the stage 1 message.
    pub message_id: String,
}

/// Why a submit was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// No such job type.
    #[error("unknown job type {job_type:?}; known job types: {}", known.join(", "))]
    UnknownJobType {
        /// What was asked for.
        job_type: String,
        /// What exists.
        known: Vec<String>,
    },
    /// Parameters failed validation.
    #[error("invalid parameters for {job_type}: {} error(s)", errors.len())]
    Invalid {
        /// Job type.
        job_type: String,
        /// Field errors.
        errors: Vec<FieldError>,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A row written in a submit's own transaction, after the job's insert: an error rolls the whole
/// submit back (the job included), so the caller's record and the job commit together or not at
/// all.
pub trait SubmitRecord: Sync {
    /// The caller's error; a submit error converts into it.
    type Error: From<SubmitError> + From<StoreError> + Send;
    /// Writes the record for `job_id`; `created` says whether this submit created the job (false:
    /// the job existed already).
    fn write(
        &self,
        tx: &Transaction<'_>,
        job_id: &JobId,
        created: bool,
    ) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send;
}

/// Nothing to record (a plain submit).
struct NoRecord;

impl SubmitRecord for NoRecord {
    type Error = SubmitError;
    async fn write(&self, _: &Transaction<'_>, _: &JobId, _: bool) -> Result<(), SubmitError> {
        Ok(())
    }
}

impl Engine {
    /// Submits a job of `job_type` with the parameters in `body`.
    pub async fn submit(
        &self,
        job_type: &str,
        body: &Value,
        correlation_id: Option<String>,
        traceparent: Option<String>,
    ) -> Result<Submitted, SubmitError> {
        self.submit_recorded(job_type, body, correlation_id, traceparent, &NoRecord)
            .await
    }

    /// Like [`Engine::submit`], and writes `record` in the submit's transaction.
    pub async fn submit_recorded<R: SubmitRecord>(
        &self,
        job_type: &str,
        body: &Value,
        correlation_id: Option<String>,
        traceparent: Option<String>,
        record: &R,
    ) -> Result<Submitted, R::Error> {
        let Some(job) = self.registry().job(job_type) else {
            return Err(SubmitError::UnknownJobType {
                job_type: job_type.chars().take(100).collect(),
                known: self
                    .registry()
                    .job_types()
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            }
            .into());
        };
        let specs = job.parameters();
        let validated = params::validate(&specs, body)
            .and_then(|v| match job.validate(&v) {
                errors if errors.is_empty() => Ok(v),
                errors => Err(errors),
            })
            .map_err(|errors| SubmitError::Invalid {
                job_type: job_type.to_string(),
                errors,
            })?;
        let job_id = JobId::derive(job_type, &params::id_params(&specs, &validated));
        let total_stages = job.stages().len() as i32;
        let params_value = Value::Object(validated);
        let correlation_id = correlation_id
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()[..16].to_string());
        let traceparent = Some(crate::telemetry::trace_context::for_new_job(
            traceparent.as_deref(),
        ));
        let msg = JobMessage::new(
            job_id.as_str(),
            job_type,
            params_value.clone(),
            1,
            1,
            Some(correlation_id.clone()),
        );
        let queues = &self.settings().queues;

        let mut client = store::client(self.pool(), "submitting a job").await?;
        let tx = client
            .transaction()
            .await
            .ctx(|| format!("starting submit of job {job_id}"))?;
        let metadata = json!({"description": job.description(), "created_by": "coremachine"});
        let inserted = tx
            .query_opt(
                sql::JOB_INSERT,
                &[
                    &job_id.as_str(),
                    &job_type,
                    &params_value,
                    &total_stages,
                    &metadata,
                    &correlation_id,
                    &traceparent,
                ],
            )
            .await
            .ctx(|| format!("inserting job {job_id}"))?;
        let mut outbox_ids = Vec::new();
        record.write(&tx, &job_id, inserted.is_some()).await?;
        if inserted.is_some() {
            events::write(
                &tx,
                &[Event::job(job_id.as_str(), "job_created", EventStatus::Success, cp::JOB_SUBMITTED)
                    .stage(1)
                    .attempt(1)
                    .data(json!({"job_type": job_type, "parameters": params_value, "total_stages": total_stages, "correlation_id": correlation_id}))],
            )
            .await?;
            outbox_ids = Outbox::write(
                &tx,
                &[msg.to_outbound(&queues.jobs, traceparent.as_deref())],
            )
            .await?;
        }
        tx.commit()
            .await
            .ctx(|| format!("committing submit of job {job_id}"))?;
        self.publish(&outbox_ids).await;

        let row = client
            .query_one(sql::JOB_GET, &[&job_id.as_str()])
            .await
            .ctx(|| format!("reading job {job_id}"))?;
        let idempotent = inserted.is_none();
        let stored: Value = row.get("parameters");
        let ignored_parameters = if idempotent {
            specs
                .iter()
                .filter(|p| !p.in_job_id && params_value.get(p.name) != stored.get(p.name))
                .map(|p| p.name.to_string())
                .collect()
        } else {
            Vec::new()
        };
        let fields = cp::Fields::job(&job_id)
            .job_type(job_type)
            .correlation(row.get("correlation_id"));
        cp::emit(
            if idempotent {
                cp::JOB_SUBMIT_IDEMPOTENT
            } else {
                cp::JOB_SUBMITTED
            },
            &fields,
        );
        Ok(Submitted {
            job_id: job_id.to_string(),
            job_type: job_type.to_string(),
            idempotent,
            status: row.get("status"),
            stage: row.get("stage"),
            total_stages: row.get("total_stages"),
            parameters: stored,
            ignored_parameters,
            correlation_id: row.get("correlation_id"),
            result_data: row.get("result_data"),
            error_details: row.get("error_details"),
            created_at: row.get("created_at"),
            queue_name: queues.jobs.clone(),
            message_id: msg.message_id(),
        })
    }
}
