//! MosaicJSON 0.0.3 (pure): Web Mercator quadkeys at a zoom chosen from the items' resolution,
//! each listing the COGs whose footprint overlaps the tile.
//!
//! Zoom rule. An item's pixel size in Web Mercator metres is its lon/lat width x 111 319.49 m per
//! degree (Web Mercator x metres per degree, at every latitude) over its width in pixels, so the
//! rule is the same whatever the target CRS. Its native zoom is the deepest zoom whose pixel is
//! not finer than that, `floor(log2(156 543.03 / pixel_m))`, clamped to 0..=24.
//! - `maxzoom`: the finest item's native zoom (no tile is served finer than the data);
//! - `minzoom`: the coarsest item's native zoom less its overview levels (what its smallest
//!   overview still serves), at most `maxzoom`;
//! - `quadkey_zoom`: the deepest zoom whose tiles are at least as wide as the narrowest item,
//!   `floor(log2(360 / width_deg))`, clamped to `minzoom..=maxzoom`: the narrowest item lies in at
//!   most 2 x 2 quadkeys, and a quadkey lists only the COGs near it.

use std::collections::BTreeMap;
use std::f64::consts::PI;

use serde_json::{Value, json};

/// Metres per pixel of zoom 0 at the equator (256-pixel tiles).
const Z0_RESOLUTION: f64 = 2.0 * PI * 6_378_137.0 / 256.0;
/// Metres per degree of longitude at the equator.
const METRES_PER_DEGREE: f64 = 2.0 * PI * 6_378_137.0 / 360.0;
/// The Web Mercator latitude limit.
const MAX_LAT: f64 = 85.051_128_779_806_59;

/// One COG of the mosaic.
#[derive(Debug, Clone)]
pub struct MosaicItem {
    /// URL of the COG.
    pub href: String,
    /// lon/lat bounds.
    pub bbox: [f64; 4],
    /// Width in pixels.
    pub width: usize,
    /// Overview levels of the COG.
    pub overviews: u32,
}

impl MosaicItem {
    /// Pixel size in Web Mercator metres (x).
    pub fn pixel_m(&self) -> f64 {
        (self.bbox[2] - self.bbox[0]) * METRES_PER_DEGREE / self.width.max(1) as f64
    }
}

/// The deepest zoom whose pixel is not finer than `pixel_m`.
pub fn native_zoom(pixel_m: f64) -> u8 {
    if pixel_m.is_nan() || pixel_m <= 0.0 {
        return 24;
    }
    (Z0_RESOLUTION / pixel_m).log2().floor().clamp(0.0, 24.0) as u8
}

/// The zooms of a mosaic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zooms {
    /// Coarsest zoom served.
    pub min: u8,
    /// Finest zoom served.
    pub max: u8,
    /// Zoom of the quadkeys.
    pub quadkey: u8,
}

/// The zooms of `items` (see the module's zoom rule).
pub fn zooms(items: &[MosaicItem]) -> Zooms {
    let max = items
        .iter()
        .map(|i| native_zoom(i.pixel_m()))
        .max()
        .unwrap_or(0);
    let min = items
        .iter()
        .map(|i| native_zoom(i.pixel_m()).saturating_sub(i.overviews.min(24) as u8))
        .min()
        .unwrap_or(0)
        .min(max);
    let narrowest = items
        .iter()
        .map(|i| i.bbox[2] - i.bbox[0])
        .fold(f64::INFINITY, f64::min);
    let fit = if narrowest.is_finite() && narrowest > 0.0 {
        (360.0 / narrowest).log2().floor().clamp(0.0, 24.0) as u8
    } else {
        max
    };
    Zooms {
        min,
        max,
        quadkey: fit.clamp(min, max),
    }
}

fn tile_x(lon: f64, z: u8) -> f64 {
    (lon + 180.0) / 360.0 * f64::from(1u32 << z)
}

fn tile_y(lat: f64, z: u8) -> f64 {
    let lat = lat.clamp(-MAX_LAT, MAX_LAT).to_radians();
    (1.0 - (lat.tan() + 1.0 / lat.cos()).ln() / PI) / 2.0 * f64::from(1u32 << z)
}

/// The tiles (x, y) at zoom `z` that overlap `bbox` with a positive area (a footprint that only
/// touches a tile's edge is not in it).
pub fn tiles(bbox: &[f64; 4], z: u8) -> Vec<(u32, u32)> {
    let n = 1u32 << z;
    let last = f64::from(n) - 1.0;
    let span = |a: f64, b: f64| {
        let lo = a.floor().clamp(0.0, last) as u32;
        let hi = (b.ceil() - 1.0).clamp(0.0, last) as u32;
        (lo, hi.max(lo))
    };
    let (x0, x1) = span(tile_x(bbox[0], z), tile_x(bbox[2], z));
    let (y0, y1) = span(tile_y(bbox[3], z), tile_y(bbox[1], z));
    (x0..=x1)
        .flat_map(|x| (y0..=y1).map(move |y| (x, y)))
        .collect()
}

/// The quadkey of tile (x, y) at zoom `z`.
pub fn quadkey(x: u32, y: u32, z: u8) -> String {
    (1..=z)
        .rev()
        .map(|i| {
            let m = 1u32 << (i - 1);
            let d = u8::from(x & m != 0) + 2 * u8::from(y & m != 0);
            char::from(b'0' + d)
        })
        .collect()
}

/// The union of the items' bounds.
pub fn union_bbox(items: &[MosaicItem]) -> Option<[f64; 4]> {
    items.iter().map(|i| i.bbox).reduce(|a, b| {
        [
            a[0].min(b[0]),
            a[1].min(b[1]),
            a[2].max(b[2]),
            a[3].max(b[3]),
        ]
    })
}

/// The MosaicJSON 0.0.3 document of `items` (None when there is none).
pub fn mosaic_json(name: &str, items: &[MosaicItem]) -> Option<Value> {
    let bounds = union_bbox(items)?;
    let z = zooms(items);
    let mut tiles_map: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for item in items {
        for (x, y) in tiles(&item.bbox, z.quadkey) {
            tiles_map
                .entry(quadkey(x, y, z.quadkey))
                .or_default()
                .push(&item.href);
        }
    }
    Some(json!({
        "mosaicjson": "0.0.3",
        "name": name,
        "version": "1.0.0",
        "minzoom": z.min,
        "maxzoom": z.max,
        "quadkey_zoom": z.quadkey,
        "bounds": bounds,
        "center": [(bounds[0] + bounds[2]) / 2.0, (bounds[1] + bounds[3]) / 2.0, z.min],
        "tiles": tiles_map,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quadkeys_follow_the_bing_scheme() {
        assert_eq!(quadkey(3, 5, 3), "213");
        assert_eq!(quadkey(0, 0, 1), "0");
        assert_eq!(quadkey(0, 0, 0), "");
    }

    fn item(bbox: [f64; 4], width: usize, overviews: u32) -> MosaicItem {
        MosaicItem {
            href: format!("h{}", bbox[0]),
            bbox,
            width,
            overviews,
        }
    }

    #[test]
    fn zoom_comes_from_the_pixel_size() {
        // 30 m pixels: zoom 12 is 38 m, zoom 13 is 19 m (finer than the data).
        assert_eq!(native_zoom(30.0), 12);
        assert_eq!(native_zoom(Z0_RESOLUTION), 0);
        assert_eq!(native_zoom(0.001), 24);
        // 0.01 degree pixels are 1113 m: zoom 7 (1223 m).
        let a = item([10.0, 40.0, 11.0, 41.0], 100, 2);
        assert_eq!(native_zoom(a.pixel_m()), 7);
        // Twice as coarse, one overview: native 6, serves down to 5.
        let b = item([11.0, 40.0, 12.0, 41.0], 50, 1);
        let z = zooms(&[a, b]);
        assert_eq!((z.min, z.max), (5, 7));
        // The narrowest item is 1 degree wide: zoom 8 tiles are 1.4 degrees; clamped to 7.
        assert_eq!(z.quadkey, 7);
        let wide = zooms(&[item([0.0, 0.0, 40.0, 10.0], 100, 6)]);
        // 40 degrees over 100 pixels (44.5 km): native zoom 1; zoom 3 would fit a 40-degree
        // item but is finer than the data.
        assert_eq!((wide.min, wide.max, wide.quadkey), (0, 1, 1));
    }

    #[test]
    fn the_quadkeys_list_every_cog_that_overlaps_them() {
        let a = item([0.5, 0.5, 1.5, 1.5], 4000, 3);
        let b = item([1.6, 0.5, 1.9, 0.9], 1000, 3);
        let m = mosaic_json("m", &[a, b]).unwrap();
        assert_eq!(m["mosaicjson"], "0.0.3");
        let qz = m["quadkey_zoom"].as_u64().unwrap() as u8;
        let tiles = m["tiles"].as_object().unwrap();
        for (k, hrefs) in tiles {
            assert_eq!(k.len(), qz as usize, "{k}");
            assert!(!hrefs.as_array().unwrap().is_empty());
        }
        let with = |h: &str| {
            tiles
                .values()
                .filter(|v| v.as_array().unwrap().iter().any(|x| x == h))
                .count()
        };
        // Zoom 10 (0.35 degree tiles, fitting the narrower item): the 1-degree item spans 3 or 4
        // tiles each way.
        assert_eq!(qz, 10);
        assert!((9..=16).contains(&with("h0.5")), "{m}");
        assert!((1..=4).contains(&with("h1.6")), "{m}");
        assert_eq!(m["bounds"], json!([0.5, 0.5, 1.9, 1.5]));
        assert!(mosaic_json("none", &[]).is_none());
    }

    #[test]
    fn a_bbox_on_a_tile_edge_is_only_in_the_tiles_it_overlaps() {
        // Zoom 1: the four quadrants; the east half touches x = 0's edge only.
        assert_eq!(tiles(&[0.0, 10.0, 90.0, 20.0], 1), vec![(1, 0)]);
        assert_eq!(tiles(&[-10.0, -10.0, 10.0, 10.0], 1).len(), 4);
    }
}
