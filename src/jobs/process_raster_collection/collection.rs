//! The STAC Collection of a processed raster collection (pure): extents from its items, summaries
//! of their bands, and the MosaicJSON as an asset and a link.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use stac::Item;

/// Media type of the MosaicJSON asset.
pub(super) const MOSAIC_MEDIA_TYPE: &str = "application/json";

/// The union of the items' bboxes and their [earliest, latest] datetimes (RFC 3339).
pub(super) fn extents(items: &[Item]) -> (Option<[f64; 4]>, [Option<String>; 2]) {
    let bbox = items
        .iter()
        .filter_map(|i| i.bbox)
        .map(|b| [b.xmin(), b.ymin(), b.xmax(), b.ymax()])
        .reduce(|a, b| {
            [
                a[0].min(b[0]),
                a[1].min(b[1]),
                a[2].max(b[2]),
                a[3].max(b[3]),
            ]
        });
    let times: BTreeSet<_> = items.iter().filter_map(|i| i.properties.datetime).collect();
    let fmt = |t: Option<&chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    };
    (bbox, [fmt(times.first()), fmt(times.last())])
}

/// The summaries: data types, band counts and CRS codes over every item's assets.
pub(super) fn summaries(items: &[Item]) -> Value {
    let mut types = BTreeSet::new();
    let mut counts = BTreeSet::new();
    let mut codes = BTreeSet::new();
    for item in items {
        if let Some(c) = item
            .properties
            .additional_fields
            .get("proj:code")
            .and_then(Value::as_str)
        {
            codes.insert(c.to_string());
        }
        for a in item.assets.values() {
            let bands = a
                .additional_fields
                .get("raster:bands")
                .and_then(Value::as_array);
            if let Some(bands) = bands {
                counts.insert(bands.len());
                for b in bands {
                    if let Some(t) = b.get("data_type").and_then(Value::as_str) {
                        types.insert(t.to_string());
                    }
                }
            }
        }
    }
    json!({"data_type": types, "band_count": counts, "proj:code": codes})
}

/// The collection `id` over `items`, with the MosaicJSON at `mosaic_href`.
pub(super) fn build_collection(
    id: &str,
    items: &[Item],
    mosaic_href: &str,
    mosaic: &Value,
) -> Value {
    let (bbox, interval) = extents(items);
    json!({
        "type": "Collection",
        "stac_version": "1.1.0",
        "id": id,
        "title": id,
        "description": format!(
            "{} rasters processed by CoreMachine's process_raster_collection into one collection, mosaicked by a MosaicJSON",
            items.len()
        ),
        "license": "other",
        "extent": {
            "spatial": {"bbox": [bbox.unwrap_or([-180.0, -90.0, 180.0, 90.0])]},
            "temporal": {"interval": [interval]},
        },
        "summaries": summaries(items),
        "assets": {
            "mosaicjson": {
                "href": mosaic_href,
                "type": MOSAIC_MEDIA_TYPE,
                "roles": ["mosaic", "tiles"],
                "title": "MosaicJSON 0.0.3 of the collection's COGs",
                "coremachine:minzoom": mosaic.get("minzoom"),
                "coremachine:maxzoom": mosaic.get("maxzoom"),
                "coremachine:quadkey_zoom": mosaic.get("quadkey_zoom"),
            },
        },
        "links": [
            {"rel": "mosaic", "href": mosaic_href, "type": MOSAIC_MEDIA_TYPE, "title": "MosaicJSON"},
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use stac::{Asset, Bbox};

    fn item(id: &str, bbox: [f64; 4], when: &str, dtype: &str, bands: usize) -> Item {
        let mut i = Item::new(id);
        i.bbox = Some(Bbox::TwoDimensional(bbox));
        i.properties.datetime = Some(when.parse().unwrap());
        let mut a = Asset::new("http://x/a.tif");
        a.additional_fields.insert(
            "raster:bands".into(),
            json!(vec![json!({"data_type": dtype}); bands]),
        );
        i.assets.insert("analysis".into(), a);
        i
    }

    #[test]
    fn extents_and_summaries_span_every_item() {
        let items = [
            item(
                "a",
                [10.0, 40.0, 11.0, 41.0],
                "2026-01-02T00:00:00Z",
                "uint8",
                3,
            ),
            item(
                "b",
                [11.0, 39.0, 12.5, 40.5],
                "2025-05-01T00:00:00Z",
                "int16",
                1,
            ),
        ];
        let c = build_collection(
            "c",
            &items,
            "http://x/c.mosaic.json",
            &json!({"minzoom": 5}),
        );
        assert_eq!(
            c["extent"]["spatial"]["bbox"],
            json!([[10.0, 39.0, 12.5, 41.0]])
        );
        assert_eq!(
            c["extent"]["temporal"]["interval"],
            json!([["2025-05-01T00:00:00Z", "2026-01-02T00:00:00Z"]])
        );
        assert_eq!(c["summaries"]["data_type"], json!(["int16", "uint8"]));
        assert_eq!(c["summaries"]["band_count"], json!([1, 3]));
        assert_eq!(c["assets"]["mosaicjson"]["href"], "http://x/c.mosaic.json");
        assert_eq!(c["links"][0]["rel"], "mosaic");
    }
}
