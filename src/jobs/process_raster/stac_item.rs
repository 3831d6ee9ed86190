//! The STAC item of a processed raster (pure): projection v2 from the COG's grid, one asset per
//! tier with its `raster:bands`, bbox and geometry in EPSG:4326.

use serde_json::{Value, json};
use stac::{Asset, Bbox, Item};
use stac_extensions::{Extension, Extensions, Projection, Raster};

use super::cog::CogReport;

/// Media type of every COG asset.
pub(crate) const COG_MEDIA_TYPE: &str = "image/tiff; application=geotiff; profile=cloud-optimized";

/// One tier's COG as stage 2 reported it.
#[derive(Debug, Clone)]
pub(crate) struct TierCog {
    /// Tier name (the asset key).
    pub tier: String,
    /// URL of the blob.
    pub href: String,
    /// The verified COG.
    pub report: CogReport,
}

/// Asset roles per tier.
fn roles(tier: &str) -> Vec<String> {
    match tier {
        "visualization" => vec!["visual".into()],
        "archive" => vec!["data".into(), "archive".into()],
        _ => vec!["data".into()],
    }
}

/// The closed ring of a lon/lat bbox.
pub(crate) fn bbox_polygon(b: &[f64; 4]) -> Value {
    json!({
        "type": "Polygon",
        "coordinates": [[[b[0], b[1]], [b[2], b[1]], [b[2], b[3]], [b[0], b[3]], [b[0], b[1]]]],
    })
}

/// Builds the item. `datetime` is the source blob's last modification (RFC 3339), so re-runs
/// produce the same item; `source` names the blob it came from.
pub(crate) fn build_item(
    item_id: &str,
    collection_id: &str,
    datetime: Option<&str>,
    source: &str,
    cogs: &[TierCog],
) -> Result<Item, String> {
    let first = cogs
        .first()
        .ok_or_else(|| "no COG to describe".to_string())?;
    let r = &first.report;
    let mut item = Item::new(item_id);
    item.collection = Some(collection_id.to_string());
    item.bbox = Some(Bbox::TwoDimensional(r.bbox_wgs84));
    item.geometry = Some(
        serde_json::from_value(bbox_polygon(&r.bbox_wgs84))
            .map_err(|e| format!("geometry: {e}"))?,
    );
    let dt = datetime
        .and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok())
        .map(|d| d.with_timezone(&chrono::Utc))
        .unwrap_or_else(chrono::Utc::now);
    item.properties.datetime = Some(dt);
    let native = super::inspect::grid_bounds(&r.geotransform, r.width, r.height);
    let proj = Projection {
        code: r.crs.code.clone(),
        wkt2: r.crs.code.is_none().then(|| r.crs.wkt.clone()),
        bbox: Some(native.to_vec()),
        shape: Some(vec![r.height, r.width]),
        transform: Some(r.proj_transform.to_vec()),
        ..Default::default()
    };
    item.set_extension(proj)
        .map_err(|e| format!("projection: {e}"))?;
    item.extensions.push(Raster::IDENTIFIER.to_string());
    item.properties
        .additional_fields
        .insert("coremachine:source".into(), json!(source));
    for c in cogs {
        let mut a = Asset::new(&c.href);
        a.r#type = Some(COG_MEDIA_TYPE.into());
        a.roles = roles(&c.tier);
        a.title = Some(format!(
            "{} COG ({})",
            c.tier,
            c.report.compression.as_deref().unwrap_or("uncompressed")
        ));
        let bands: Vec<Value> = c
            .report
            .bands
            .iter()
            .map(|b| {
                let mut v = json!({
                    "data_type": b.data_type,
                    "spatial_resolution": b.spatial_resolution,
                });
                if let Some(n) = b.nodata {
                    v["nodata"] = json!(n);
                }
                if let Some(s) = &b.statistics {
                    v["statistics"] = s.clone();
                }
                v
            })
            .collect();
        a.additional_fields
            .insert("raster:bands".into(), json!(bands));
        a.additional_fields
            .insert("file:size".into(), json!(c.report.size_bytes));
        item.assets.insert(c.tier.clone(), a);
    }
    Ok(item)
}

/// A minimal collection for `id`, with a global extent (pgSTAC keeps items' own extents).
pub(crate) fn new_collection(id: &str) -> Value {
    json!({
        "type": "Collection",
        "stac_version": "1.1.0",
        "id": id,
        "description": format!("Rasters processed by CoreMachine's process_raster into collection {id}"),
        "license": "other",
        "extent": {
            "spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]},
            "temporal": {"interval": [[null, null]]},
        },
        "links": [],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::process_raster::cog::{BandInfo, CogChecks};
    use crate::jobs::process_raster::inspect::CrsInfo;

    fn report() -> CogReport {
        CogReport {
            size_bytes: 1234,
            width: 200,
            height: 100,
            bands: vec![BandInfo {
                data_type: "int16".into(),
                nodata: Some(-32768.0),
                spatial_resolution: 0.01,
                color_interpretation: "gray".into(),
                statistics: Some(json!({"minimum": 1, "maximum": 9, "mean": 5, "stddev": 2})),
            }],
            overviews: vec![],
            compression: Some("DEFLATE".into()),
            crs: CrsInfo {
                code: Some("EPSG:4326".into()),
                name: Some("WGS 84".into()),
                wkt: String::new(),
            },
            geotransform: [10.0, 0.01, 0.0, 50.0, 0.0, -0.01],
            proj_transform: [0.01, 0.0, 10.0, 0.0, -0.01, 50.0],
            bbox_wgs84: [10.0, 49.0, 12.0, 50.0],
            checks: CogChecks {
                layout_cog: true,
                tiled: true,
                overviews_to_512: true,
                crs_is_target: true,
            },
            creation_options: vec![],
        }
    }

    #[test]
    fn the_item_carries_projection_raster_bands_and_one_asset_per_tier() {
        let cogs = [
            TierCog {
                tier: "analysis".into(),
                href: "http://x/c/a.tif".into(),
                report: report(),
            },
            TierCog {
                tier: "archive".into(),
                href: "http://x/c/b.tif".into(),
                report: report(),
            },
        ];
        let item = build_item(
            "elev",
            "dems",
            Some("2026-12-01T10:00:00Z"),
            "bronze/elev.tif",
            &cogs,
        )
        .unwrap();
        let v = serde_json::to_value(&item).unwrap();
        assert_eq!(v["collection"], "dems");
        assert_eq!(v["properties"]["proj:code"], "EPSG:4326");
        assert_eq!(v["properties"]["proj:shape"], json!([100, 200]));
        assert_eq!(
            v["properties"]["proj:transform"],
            json!([0.01, 0.0, 10.0, 0.0, -0.01, 50.0])
        );
        assert_eq!(v["properties"]["datetime"], "2026-12-01T10:00:00Z");
        assert_eq!(v["bbox"], json!([10.0, 49.0, 12.0, 50.0]));
        assert_eq!(v["geometry"]["type"], "Polygon");
        let a = &v["assets"]["analysis"];
        assert_eq!(a["type"], COG_MEDIA_TYPE);
        assert_eq!(a["roles"], json!(["data"]));
        assert_eq!(a["raster:bands"][0]["nodata"], json!(-32768.0));
        assert_eq!(a["raster:bands"][0]["statistics"]["maximum"], json!(9));
        assert_eq!(v["assets"]["archive"]["roles"], json!(["data", "archive"]));
        let ext: Vec<&str> = v["stac_extensions"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(ext.iter().any(|e| e.contains("projection/v2")), "{ext:?}");
        assert!(ext.iter().any(|e| e.contains("raster/v1.1")), "{ext:?}");
    }
}
