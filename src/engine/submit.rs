//! Submit: validate, derive the content-addressed job id, and create the job with its stage 1
//! message in one transaction. Submitting the same job again returns the existing one.
//!
//! A caller that must record something of its own with the job (the platform layer's request
//! row) passes a [`SubmitRecord`]: it is written in the same transaction, so neither exists
//! without the other.
//!
//! Decide ([`validate_submission`]: the job type's schema and rules, the job id) -> apply (the
//! job row, its event and its stage 1 message, in one transaction) -> emit, then answer with the
//! job as stored ([`ignored_parameters`] says what an existing job kept of its own).

use serde_json::{Value, json};

use super::Engine;
use super::events::{self, Event, EventStatus};
use super::ids::JobId;
use super::messages::JobMessage;
use crate::jobs::{FieldError, Job, ParamSpec, params};
use crate::store::jobs::{self, JobRow, NewJob};
use crate::store::{self, QueryContext, StoreError, Transaction};
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

/// A submission that passed validation: the job it creates (or finds).
#[derive(Debug, Clone)]
struct Validated {
    /// The content-addressed job id.
    job_id: JobId,
    /// The validated parameters.
    params: Value,
    /// The job type's parameters.
    specs: Vec<ParamSpec>,
    /// How many stages the job type has.
    total_stages: i32,
}

/// Validates `body` against the job type `def` (`job_type`): its parameter schema, then its own
/// rules; the job id is derived from the parameters that are part of it.
fn validate_submission(
    def: &dyn Job,
    job_type: &str,
    body: &Value,
) -> Result<Validated, SubmitError> {
    let specs = def.parameters();
    let validated = params::validate(&specs, body)
        .and_then(|v| match def.validate(&v) {
            errors if errors.is_empty() => Ok(v),
            errors => Err(errors),
        })
        .map_err(|errors| SubmitError::Invalid {
            job_type: job_type.to_string(),
            errors,
        })?;
    Ok(Validated {
        job_id: JobId::derive(job_type, &params::id_params(&specs, &validated)),
        params: Value::Object(validated),
        total_stages: def.stages().len() as i32,
        specs,
    })
}

/// The submitted parameters that are not part of the job id and differ from those `stored` with
/// the existing job (they were ignored: the job keeps its values).
fn ignored_parameters(specs: &[ParamSpec], submitted: &Value, stored: &Value) -> Vec<String> {
    specs
        .iter()
        .filter(|p| !p.in_job_id && submitted.get(p.name) != stored.get(p.name))
        .map(|p| p.name.to_string())
        .collect()
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
        let Some(def) = self.registry().job(job_type) else {
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
        let v = validate_submission(def.as_ref(), job_type, body)?;
        let job_id = &v.job_id;
        let correlation_id = correlation_id
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()[..16].to_string());
        let traceparent = crate::telemetry::trace_context::for_new_job(traceparent.as_deref());
        let msg = JobMessage::new(
            job_id.as_str(),
            job_type,
            v.params.clone(),
            1,
            1,
            Some(correlation_id.clone()),
        );

        let mut client = store::client(self.pool(), "submitting a job").await?;
        let tx = client
            .transaction()
            .await
            .ctx(|| format!("starting submit of job {job_id}"))?;
        let metadata = json!({"description": def.description(), "created_by": "coremachine"});
        let new = NewJob {
            job_id,
            job_type,
            parameters: &v.params,
            total_stages: v.total_stages,
            metadata: &metadata,
            correlation_id: &correlation_id,
            traceparent: Some(&traceparent),
        };
        let created = jobs::insert(&tx, &new).await?;
        record.write(&tx, job_id, created).await?;
        let outbox_ids = if created {
            self.job_created(&tx, &new, &msg).await?
        } else {
            Vec::new()
        };
        tx.commit()
            .await
            .ctx(|| format!("committing submit of job {job_id}"))?;
        self.publish(&outbox_ids).await;

        let job = jobs::get(&client, job_id).await?.ok_or_else(|| {
            StoreError::Config(format!("job {job_id} is gone right after its submit"))
        })?;
        Ok(self.submitted(job_type, &v, job, !created, msg.message_id()))
    }

    /// A new job: its `job_created` event and its stage 1 message. Returns the outbox ids.
    async fn job_created(
        &self,
        tx: &Transaction<'_>,
        new: &NewJob<'_>,
        msg: &JobMessage,
    ) -> Result<Vec<i64>, StoreError> {
        events::write(
            tx,
            &[Event::job(new.job_id.as_str(), "job_created", EventStatus::Success, cp::JOB_SUBMITTED)
                .stage(1)
                .attempt(1)
                .data(json!({"job_type": new.job_type, "parameters": new.parameters, "total_stages": new.total_stages, "correlation_id": new.correlation_id}))],
        )
        .await?;
        Outbox::write(
            tx,
            &[msg.to_outbound(&self.settings().queues.jobs, new.traceparent)],
        )
        .await
    }

    /// The answer to a submit (`idempotent`: the job existed), from the job as stored; emits the
    /// submit's checkpoint.
    fn submitted(
        &self,
        job_type: &str,
        v: &Validated,
        job: JobRow,
        idempotent: bool,
        message_id: String,
    ) -> Submitted {
        let ignored_parameters = if idempotent {
            ignored_parameters(&v.specs, &v.params, &job.parameters)
        } else {
            Vec::new()
        };
        let fields = cp::Fields::job(&v.job_id)
            .job_type(job_type)
            .correlation(job.correlation_id.as_deref());
        cp::emit(
            if idempotent {
                cp::JOB_SUBMIT_IDEMPOTENT
            } else {
                cp::JOB_SUBMITTED
            },
            &fields,
        );
        Submitted {
            job_id: v.job_id.to_string(),
            job_type: job_type.to_string(),
            idempotent,
            status: job.status.to_string(),
            stage: job.stage,
            total_stages: job.total_stages,
            parameters: job.parameters,
            ignored_parameters,
            correlation_id: job.correlation_id,
            result_data: job.result_data,
            error_details: job.error_details,
            created_at: job.created_at,
            queue_name: self.settings().queues.jobs.clone(),
            message_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::Registry;

    #[test]
    fn a_submission_is_validated_and_named_by_its_id_parameters() {
        let registry = Registry::builtin();
        let def = registry
            .job("hello_world")
            .expect("hello_world is built in");
        let a = validate_submission(def.as_ref(), "hello_world", &json!({})).expect("valid");
        let b = validate_submission(def.as_ref(), "hello_world", &json!({})).expect("valid");
        assert_eq!(a.job_id, b.job_id, "the same parameters name the same job");
        assert_eq!(a.total_stages, def.stages().len() as i32);
        assert!(a.params.is_object());
        let bad = validate_submission(def.as_ref(), "hello_world", &json!("not an object"));
        assert!(
            matches!(bad, Err(SubmitError::Invalid { ref job_type, .. }) if job_type == "hello_world"),
            "{bad:?}"
        );
    }

    #[test]
    fn only_differing_parameters_outside_the_job_id_are_reported_as_ignored() {
        let spec = |name: &'static str, in_job_id: bool| ParamSpec {
            in_job_id,
            ..ParamSpec::new(name, crate::jobs::ParamKind::String, "")
        };
        let specs = [spec("n", true), spec("label", false), spec("note", false)];
        let stored = json!({"n": 1, "label": "a", "note": "x"});
        for (submitted, want) in [
            (json!({"n": 1, "label": "a", "note": "x"}), vec![]),
            (json!({"n": 2, "label": "a", "note": "x"}), vec![]),
            (json!({"n": 1, "label": "b", "note": "x"}), vec!["label"]),
            (json!({"n": 1, "label": "b"}), vec!["label", "note"]),
        ] {
            assert_eq!(
                ignored_parameters(&specs, &submitted, &stored),
                want,
                "{submitted}"
            );
        }
    }
}
