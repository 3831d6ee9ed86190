//! GeoTIFFs made by the tests with GDAL: every kind of input process_raster must take or refuse.
//! Pixels are written in bands of rows, so even the 4096 x 4096 file never sits in memory whole.

use std::path::{Path, PathBuf};

use gdal::raster::{
    Buffer, ColorEntry, ColorInterpretation, ColorTable, GdalType, PaletteInterpretation,
    RasterCreationOptions, RgbaEntry,
};
use gdal::spatial_ref::SpatialRef;
use gdal::{Dataset, DriverManager};

/// One synthetic raster.
pub struct Spec {
    pub width: usize,
    pub height: usize,
    pub bands: usize,
    /// `EPSG:nnnn`, a PROJ string, or None for no CRS.
    pub crs: Option<&'static str>,
    /// Geotransform.
    pub gt: [f64; 6],
    pub nodata: Option<f64>,
    pub palette: bool,
    /// GTiff creation options (`TILED=NO` is GDAL's default: striped).
    pub options: &'static [&'static str],
}

impl Spec {
    pub fn new(
        width: usize,
        height: usize,
        bands: usize,
        crs: Option<&'static str>,
        gt: [f64; 6],
    ) -> Self {
        Self {
            width,
            height,
            bands,
            crs,
            gt,
            nodata: None,
            palette: false,
            options: &[],
        }
    }
}

/// A pixel value that varies over the image (a gradient with a band offset), as `f64`.
fn value(x: usize, y: usize, band: usize) -> f64 {
    ((x * 7 + y * 3 + band * 50) % 251) as f64
}

/// Writes `spec` as a GeoTIFF of pixel type `T`; `f` maps (x, y, band) to a pixel.
pub fn write<T: GdalType + Copy + Default>(
    path: &Path,
    spec: &Spec,
    f: impl Fn(usize, usize, usize) -> T,
) -> PathBuf {
    let drv = DriverManager::get_driver_by_name("GTiff").expect("GTiff driver");
    let mut opts = RasterCreationOptions::new();
    for o in spec.options {
        let (k, v) = o.split_once('=').unwrap();
        opts.set_name_value(k, v).unwrap();
    }
    let mut ds: Dataset = drv
        .create_with_band_type_with_options::<T, _>(
            path,
            spec.width,
            spec.height,
            spec.bands,
            &opts,
        )
        .expect("create GeoTIFF");
    ds.set_geo_transform(&spec.gt).unwrap();
    if let Some(c) = spec.crs {
        ds.set_spatial_ref(&SpatialRef::from_definition(c).unwrap())
            .unwrap();
    }
    for b in 1..=spec.bands {
        let mut band = ds.rasterband(b).unwrap();
        if let Some(n) = spec.nodata {
            band.set_no_data_value(Some(n)).unwrap();
        }
        if spec.palette {
            let mut ct = ColorTable::new(PaletteInterpretation::Rgba);
            for (i, (r, g, bl)) in [
                (0, 0, 0),
                (34, 139, 34),
                (0, 0, 255),
                (255, 255, 0),
                (128, 128, 128),
            ]
            .into_iter()
            .enumerate()
            {
                ct.set_color_entry(
                    i as u16,
                    &ColorEntry::Rgba(RgbaEntry {
                        r,
                        g,
                        b: bl,
                        a: 255,
                    }),
                );
            }
            band.set_color_table(&ct);
            band.set_color_interpretation(ColorInterpretation::PaletteIndex)
                .unwrap();
        }
        let rows = 256.min(spec.height);
        let mut y0 = 0;
        while y0 < spec.height {
            let h = rows.min(spec.height - y0);
            let data: Vec<T> = (0..h)
                .flat_map(|dy| (0..spec.width).map(move |x| (x, y0 + dy)))
                .map(|(x, y)| f(x, y, b))
                .collect();
            let mut buf = Buffer::new((spec.width, h), data);
            band.write((0, y0 as isize), (spec.width, h), &mut buf)
                .unwrap();
            y0 += h;
        }
    }
    drop(ds);
    path.to_path_buf()
}

pub fn byte(x: usize, y: usize, b: usize) -> u8 {
    value(x, y, b) as u8
}

/// An Int16 elevation with a nodata frame 10 pixels wide.
pub fn dem(width: usize, height: usize, nodata: i16) -> impl Fn(usize, usize, usize) -> i16 {
    move |x, y, _| {
        if x < 10 || y < 10 || x + 10 >= width || y + 10 >= height {
            nodata
        } else {
            (100 + (x + y) % 900) as i16
        }
    }
}

pub fn float(x: usize, y: usize, _: usize) -> f32 {
    (x as f32 * 0.25).sin() * 10.0 + y as f32 * 0.01
}

/// Five land-cover classes in stripes.
pub fn classes(x: usize, y: usize, _: usize) -> u8 {
    (((x / 37) + (y / 53)) % 5) as u8
}

/// A PNG (a real one, from GDAL's PNG driver) at `path`, whatever its name says.
pub fn png(path: &Path) -> PathBuf {
    let mem = DriverManager::get_driver_by_name("MEM").unwrap();
    let ds = mem.create_with_band_type::<u8, _>("", 64, 64, 3).unwrap();
    let png = DriverManager::get_driver_by_name("PNG").unwrap();
    let tmp = path.with_extension("png");
    ds.create_copy(&png, &tmp, &RasterCreationOptions::new())
        .unwrap();
    std::fs::rename(&tmp, path).unwrap();
    let _ = std::fs::remove_file(tmp.with_extension("png.aux.xml"));
    path.to_path_buf()
}
