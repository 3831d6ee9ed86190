//! The fan-in tasks of process_raster_collection: the MosaicJSON written to the output container,
//! and the STAC collection with an item per input upserted into pgSTAC.

use std::collections::BTreeMap;

use pgstac::Pgstac;
use serde_json::{Value, json};

use super::collection::{self, MOSAIC_MEDIA_TYPE};
use super::mosaic::{self, MosaicItem};
use crate::jobs::list_container_contents::handlers::{
    param_field as field, param_str as param, task_error,
};
use crate::jobs::process_raster::handlers::{
    blob_url, ensure_container, pg_error, pgstac_error, stac_client, tier_cog,
};
use crate::jobs::process_raster::{RasterDeps, item_id_from_blob, stac_item};
use crate::jobs::{TaskContext, TaskError};

fn missing(ctx: &TaskContext, what: String) -> TaskError {
    TaskError::permanent("MissingInput", format!("task {}: {what}", ctx.task_id))
}

fn blob_of(c: &Value) -> &str {
    c.get("blob_name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Stage 4: the MosaicJSON of the COGs (one per input, the `mosaic_tier` one), written to the
/// output container. Refuses COGs in different CRSs (a collection has one target CRS).
pub async fn create_mosaicjson(deps: RasterDeps, ctx: TaskContext) -> Result<Value, TaskError> {
    let collection_id = param(&ctx, "collection_id")?.to_string();
    let tier = param(&ctx, "mosaic_tier")?.to_string();
    let out_container = param(&ctx, "output_container")?.to_string();
    let out_blob = param(&ctx, "mosaic_blob")?.to_string();
    let cogs: Vec<Value> = field(&ctx, "cogs")?;
    let mut items = Vec::new();
    let mut crs: Option<(String, String)> = None;
    let mut times = Vec::new();
    for c in cogs
        .iter()
        .filter(|c| c.get("tier").and_then(Value::as_str) == Some(&tier))
    {
        let t = tier_cog(c, &ctx.task_id)?;
        let code = t
            .report
            .crs
            .code
            .clone()
            .unwrap_or_else(|| t.report.crs.wkt.clone());
        match &crs {
            None => crs = Some((code, blob_of(c).to_string())),
            Some((first, first_blob)) if *first != code => {
                return Err(TaskError::permanent(
                    "MixedCrs",
                    format!(
                        "collection {collection_id}: every COG must share one target CRS, but {first_blob} is in {first} and {} in {code}",
                        blob_of(c)
                    ),
                ));
            }
            Some(_) => {}
        }
        if let Some(t) = c
            .pointer("/validation/last_modified")
            .and_then(Value::as_str)
            .and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok())
        {
            times.push(t.with_timezone(&chrono::Utc));
        }
        items.push(MosaicItem {
            href: t.href.clone(),
            bbox: t.report.bbox_wgs84,
            width: t.report.width,
            overviews: t.report.overviews.len() as u32,
        });
    }
    let doc = mosaic::mosaic_json(&collection_id, &items)
        .ok_or_else(|| missing(&ctx, format!("no {tier} COG to mosaic")))?;
    let client = deps.blobs.client().await?;
    let what = |op: &str| {
        format!(
            "{op} {out_container}/{out_blob} (the MosaicJSON of collection {collection_id}) for job {}",
            ctx.job_id
        )
    };
    ensure_container(&client, &out_container, what).await?;
    let body = serde_json::to_vec_pretty(&doc)
        .map_err(|e| TaskError::permanent("Serialize", e.to_string()))?;
    client
        .put_blob(&out_container, &out_blob, body, MOSAIC_MEDIA_TYPE)
        .await
        .map_err(|e| task_error(e, what("uploading")))?;
    times.sort();
    let fmt = |t: Option<&chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    };
    Ok(json!({
        "href": blob_url(&client, &out_container, &out_blob),
        "output_container": out_container,
        "output_blob": out_blob,
        "tier": tier,
        "crs": crs.map(|c| c.0),
        "minzoom": doc["minzoom"],
        "maxzoom": doc["maxzoom"],
        "quadkey_zoom": doc["quadkey_zoom"],
        "bounds": doc["bounds"],
        "interval": [fmt(times.first()), fmt(times.last())],
        "quadkey_count": doc["tiles"].as_object().map_or(0, |t| t.len()),
        "cog_count": items.len(),
        "cogs": cogs,
    }))
}

/// Stage 5: an item per input (an asset per tier, as process_raster writes it) and the
/// collection with extents, summaries and the MosaicJSON, upserted into pgSTAC in one
/// transaction (a re-run upserts the same).
pub async fn create_stac_collection(
    deps: RasterDeps,
    ctx: TaskContext,
) -> Result<Value, TaskError> {
    let collection_id = param(&ctx, "collection_id")?.to_string();
    let cogs: Vec<Value> = field(&ctx, "cogs")?;
    let mosaic: Value = field(&ctx, "mosaic")?;
    let outcomes: Vec<Value> = field(&ctx, "outcomes")?;
    let mosaic_href = mosaic
        .get("href")
        .and_then(Value::as_str)
        .ok_or_else(|| missing(&ctx, "the mosaic result has no href".into()))?;
    let mut by_blob: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for c in &cogs {
        by_blob.entry(blob_of(c)).or_default().push(c);
    }
    let mut items = Vec::new();
    for (blob, group) in &by_blob {
        let tiers = group
            .iter()
            .map(|c| tier_cog(c, &ctx.task_id))
            .collect::<Result<Vec<_>, _>>()?;
        let v = group.first().and_then(|c| c.get("validation"));
        let container = v
            .and_then(|v| v.get("container_name"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let datetime = v
            .and_then(|v| v.get("last_modified"))
            .and_then(Value::as_str);
        let item = stac_item::build_item(
            &item_id_from_blob(blob),
            &collection_id,
            datetime,
            &format!("{container}/{blob}"),
            &tiers,
        )
        .map_err(|e| {
            TaskError::permanent(
                "StacItem",
                format!("the STAC item of {container}/{blob}: {e}"),
            )
        })?;
        items.push(item);
    }
    let coll = collection::build_collection(&collection_id, &items, mosaic_href, &mosaic);
    let mut client = stac_client(&deps.stac, &format!("collection {collection_id}")).await?;
    let tx = client.transaction().await.map_err(pg_error(format!(
        "starting the upsert of collection {collection_id}"
    )))?;
    tx.execute(crate::store::sql::STAC_COLLECTION_LOCK, &[&collection_id])
        .await
        .map_err(pg_error(format!("locking collection {collection_id}")))?;
    tx.upsert_collection(&coll)
        .await
        .map_err(|e| pgstac_error(e, format!("upserting collection {collection_id}")))?;
    tx.upsert_items(&items).await.map_err(|e| {
        pgstac_error(
            e,
            format!(
                "upserting {} items into collection {collection_id}",
                items.len()
            ),
        )
    })?;
    tx.commit()
        .await
        .map_err(pg_error(format!("committing collection {collection_id}")))?;
    Ok(json!({
        "collection_id": collection_id,
        "item_count": items.len(),
        "item_ids": items.iter().map(|i| i.id.clone()).collect::<Vec<_>>(),
        "bbox": coll["extent"]["spatial"]["bbox"][0],
        "interval": coll["extent"]["temporal"]["interval"][0],
        "summaries": coll["summaries"],
        "mosaic": mosaic,
        "outcomes": outcomes,
    }))
}
