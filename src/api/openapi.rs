//! The OpenAPI 3.1 document, generated from the route annotations and response types, served at
//! `GET /api/openapi.json`. Adding a route = one `#[utoipa::path]` on its handler plus one line in
//! `paths(...)` below; schemathesis (`scripts/lib/schemathesis.sh`) checks the running service
//! against it.

use axum::Json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{
    admin, control, error, events, health, job_types, jobs, platform, submit, task_detail, ui,
};

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "CoreMachine API",
        description = "Multi-stage job orchestration: submit jobs, follow their stages and tasks, cancel and resubmit. Every 4xx/5xx body is an ErrorEnvelope.",
        license(name = "MIT"),
    ),
    paths(
        submit::submit,
        submit::status,
        jobs::list_jobs,
        jobs::get_job,
        jobs::list_tasks,
        task_detail::get_task,
        job_types::job_types,
        control::cancel,
        control::resubmit,
        events::events,
        events::summary,
        events::timeline,
        ui::index,
        ui::jobs,
        ui::tasks,
        ui::inputs,
        jobs::dbadmin_jobs,
        jobs::dbadmin_job,
        jobs::dbadmin_tasks,
        health::health,
        admin::migration_status,
        admin::apply_migrations,
        admin::redeploy,
        platform::submit,
        platform::status,
        platform::status_list,
        openapi_json,
    ),
    components(schemas(
        error::ErrorEnvelope,
        error::FieldDetail,
        crate::engine::state::JobStatus,
        crate::engine::state::TaskStatus,
        control::ResubmitFromName,
    )),
    modifiers(&Keys),
    tags(
        (name = "jobs", description = "Submit and read jobs"),
        (name = "control", description = "Cancel and resubmit"),
        (name = "events", description = "A job's events, their summary and its timeline"),
        (name = "ui", description = "The operator web page and its data reads"),
        (name = "compatibility", description = "Routes of the earlier implementation"),
        (name = "platform", description = "The earlier platform layer: submit by dataset / resource / version, the job chosen from the files"),
        (name = "operations", description = "Health and the API description"),
        (name = "admin", description = "Schema administration (admin key, COREMACHINE_ADMIN_ENABLED=true)"),
    )
)]
pub(crate) struct ApiDoc;

/// Adds the Functions key schemes (`x-functions-key` header or `code` query parameter).
struct Keys;

impl Modify for Keys {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let c = doc.components.get_or_insert_with(Default::default);
        let header = |d: &str| {
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-functions-key",
                d,
            )))
        };
        let query = |d: &str| {
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description("code", d)))
        };
        c.add_security_scheme("function_key", header("A function key (or the master key)"));
        c.add_security_scheme("function_code", query("A function key (or the master key)"));
        c.add_security_scheme("admin_key", header("The master (admin) key"));
        c.add_security_scheme("admin_code", query("The master (admin) key"));
    }
}

/// The document as JSON, with links from a submit response to the operations that take its
/// `job_id`, so a stateful client (schemathesis' stateful phase) can follow a real job through
/// status, tasks, cancel and resubmit. (Added as JSON: utoipa 5 writes `operation_id` where
/// OpenAPI says `operationId`.)
pub fn document() -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    let links: serde_json::Map<String, serde_json::Value> = [
        ("status", "job_status"),
        ("job", "get_job"),
        ("tasks", "list_tasks"),
        ("cancel", "cancel_job"),
        ("resubmit", "resubmit_job"),
    ]
    .into_iter()
    .map(|(name, op)| {
        (
            name.to_string(),
            serde_json::json!({"operationId": op, "parameters": {"job_id": "$response.body#/job_id"}}),
        )
    })
    .collect();
    for code in ["200", "201"] {
        if let Some(r) = doc.pointer_mut(&format!(
            "/paths/~1api~1jobs~1submit~1{{job_type}}/post/responses/{code}"
        )) {
            r["links"] = serde_json::Value::Object(links.clone());
        }
    }
    // A platform request's status, and its job, follow from the submit's answer.
    let platform_links = serde_json::json!({
        "request_status": {"operationId": "platform_status", "parameters": {"request_id": "$response.body#/request_id"}},
        "job": {"operationId": "get_job", "parameters": {"job_id": "$response.body#/job_id"}},
    });
    for code in ["200", "202"] {
        if let Some(r) = doc.pointer_mut(&format!(
            "/paths/~1api~1platform~1submit/post/responses/{code}"
        )) {
            r["links"] = platform_links.clone();
        }
    }
    doc
}

/// This document.
#[utoipa::path(
    get, path = "/api/openapi.json", tag = "operations", operation_id = "openapi",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object)),
    security(())
)]
pub(crate) async fn openapi_json() -> Json<serde_json::Value> {
    Json(document())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_is_openapi_3_1_and_names_every_error_schema() {
        let doc = super::document();
        assert!(
            doc.pointer(
                "/paths/~1api~1jobs~1submit~1{job_type}/post/responses/201/links/cancel/operationId"
            )
            .is_some()
        );
        assert!(
            doc.pointer(
                "/paths/~1api~1platform~1submit/post/responses/202/links/request_status/operationId"
            )
            .is_some()
        );
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        if std::env::var("PRINT_OPENAPI").is_ok() {
            println!("{}", serde_json::to_string_pretty(&doc).unwrap());
        }
        assert!(doc.pointer("/components/schemas/ErrorEnvelope").is_some());
    }
}
