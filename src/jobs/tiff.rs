//! TIFF sniffing from the first bytes of a file: classic TIFF or BigTIFF, byte order, the first
//! IFD (size, tiling, strips, GeoTIFF tags), GDAL's "ghost" structural-metadata header, and whether
//! the file looks like a Cloud-Optimized GeoTIFF.
//!
//! A COG keeps its IFDs *before* the image data and is tiled, so a reader fetching the first few
//! kilobytes learns where every tile is. GDAL's COG driver also writes a ghost header right after
//! the TIFF header (`GDAL_STRUCTURAL_METADATA_SIZE=… bytes` then `LAYOUT=IFDS_BEFORE_DATA`, …).
//! [`TiffInfo::looks_like_cog`] is true for a tiled file whose first IFD precedes its image data
//! (or whose ghost header says so). Only the bytes given are read: the caller fetches the header
//! range and, when [`TiffHeader::first_ifd_offset`] lies beyond it, the IFD's range.

use serde::Serialize;

/// Classic TIFF (32-bit offsets) or BigTIFF (64-bit offsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(super) enum TiffFormat {
    /// Version 42.
    #[serde(rename = "TIFF")]
    Tiff,
    /// Version 43.
    #[serde(rename = "BigTIFF")]
    BigTiff,
}

/// Byte order of every number in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum ByteOrder {
    /// `II`.
    LittleEndian,
    /// `MM`.
    BigEndian,
}

/// Why bytes could not be read as TIFF.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum SniffError {
    /// The magic bytes are not `II*\0` / `MM\0*` (or the BigTIFF forms).
    #[error("not a TIFF file: {0}")]
    NotTiff(String),
    /// The structure is broken or lies outside the bytes given.
    #[error("malformed TIFF: {0}")]
    Malformed(String),
}

/// GDAL's structural metadata ("ghost header").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(super) struct GhostHeader {
    /// The declared size of the metadata block.
    pub size: usize,
    /// `LAYOUT` (`IFDS_BEFORE_DATA` for COGs).
    pub layout: Option<String>,
    /// `BLOCK_ORDER` (e.g. `ROW_MAJOR`).
    pub block_order: Option<String>,
}

/// The fixed header (8 bytes classic, 16 BigTIFF) and an optional ghost header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(super) struct TiffHeader {
    /// Classic or BigTIFF.
    pub format: TiffFormat,
    /// Byte order.
    pub byte_order: ByteOrder,
    /// Offset of the first IFD.
    pub first_ifd_offset: u64,
    /// GDAL's ghost header, when present.
    pub ghost: Option<GhostHeader>,
}

/// What the first IFD says.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub(super) struct IfdSummary {
    /// Number of entries.
    pub entries: u64,
    /// ImageWidth.
    pub width: Option<u64>,
    /// ImageLength.
    pub height: Option<u64>,
    /// TileWidth (tiled files only).
    pub tile_width: Option<u64>,
    /// TileLength (tiled files only).
    pub tile_height: Option<u64>,
    /// Has TileOffsets.
    pub tiled: bool,
    /// Has StripOffsets.
    pub striped: bool,
    /// Compression code (1 none, 5 LZW, 7 JPEG, 8 Deflate, ...).
    pub compression: Option<u64>,
    /// SamplesPerPixel.
    pub samples_per_pixel: Option<u64>,
    /// Has GeoTIFF tags (ModelPixelScale, ModelTiepoint, ModelTransformation or GeoKeyDirectory).
    pub geotiff: bool,
    /// Smallest tile or strip offset, when the offsets could be read from the bytes given.
    pub first_data_offset: Option<u64>,
    /// Offset of the next IFD (0 = none): overviews in a COG.
    pub next_ifd_offset: u64,
}

/// The verdict on one TIFF file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(super) struct TiffInfo {
    /// Classic or BigTIFF.
    pub format: TiffFormat,
    /// Byte order.
    pub byte_order: ByteOrder,
    /// Offset of the first IFD.
    pub first_ifd_offset: u64,
    /// Whether a GDAL ghost header is present.
    pub ghost_header: bool,
    /// The ghost header's LAYOUT, when present.
    pub layout: Option<String>,
    /// Whether the first IFD precedes the image data.
    pub ifd_first: bool,
    /// Whether the image is tiled.
    pub tiled: bool,
    /// Image size and structure, when the IFD could be read.
    pub ifd: Option<IfdSummary>,
    /// Tiled, with IFDs before the data (or a ghost header saying IFDS_BEFORE_DATA).
    pub looks_like_cog: bool,
    /// Why `looks_like_cog` is what it is, in words.
    pub cog_reason: String,
}

const GHOST_KEY: &[u8] = b"GDAL_STRUCTURAL_METADATA_SIZE=";

/// Reads the TIFF header (and ghost header) from the file's first bytes.
pub(super) fn read_header(buf: &[u8]) -> Result<TiffHeader, SniffError> {
    if buf.len() < 8 {
        return Err(SniffError::NotTiff(format!(
            "only {} bytes, a TIFF header needs 8",
            buf.len()
        )));
    }
    let byte_order = match &buf[0..2] {
        b"II" => ByteOrder::LittleEndian,
        b"MM" => ByteOrder::BigEndian,
        other => {
            return Err(SniffError::NotTiff(format!(
                "byte-order mark is {other:02x?}, expected \"II\" or \"MM\""
            )));
        }
    };
    let r = Reader { buf, byte_order };
    let version = r.u16(2).expect("length checked");
    let (format, first_ifd_offset, header_len) = match version {
        42 => (
            TiffFormat::Tiff,
            r.u32(4).expect("length checked") as u64,
            8,
        ),
        43 => {
            if buf.len() < 16 {
                return Err(SniffError::Malformed(
                    "BigTIFF header truncated (needs 16 bytes)".into(),
                ));
            }
            let offset_size = r.u16(4).unwrap_or(0);
            if offset_size != 8 {
                return Err(SniffError::Malformed(format!(
                    "BigTIFF offset size is {offset_size}, expected 8"
                )));
            }
            (TiffFormat::BigTiff, r.u64(8).expect("length checked"), 16)
        }
        v => {
            return Err(SniffError::NotTiff(format!(
                "version is {v}, expected 42 (TIFF) or 43 (BigTIFF)"
            )));
        }
    };
    if first_ifd_offset < header_len as u64 {
        return Err(SniffError::Malformed(format!(
            "first IFD offset {first_ifd_offset} points into the header"
        )));
    }
    Ok(TiffHeader {
        format,
        byte_order,
        first_ifd_offset,
        ghost: read_ghost(&buf[header_len..]),
    })
}

fn read_ghost(after_header: &[u8]) -> Option<GhostHeader> {
    let rest = after_header.strip_prefix(GHOST_KEY)?;
    let digits: String = rest
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .map(|&b| b as char)
        .collect();
    let size: usize = digits.parse().ok()?;
    // "GDAL_STRUCTURAL_METADATA_SIZE=000140 bytes\n" then `size` bytes of KEY=VALUE lines.
    let text_start = rest.iter().position(|&b| b == b'\n')? + 1;
    let text = &rest[text_start..rest.len().min(text_start + size)];
    let text = String::from_utf8_lossy(text);
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim().to_string())
    };
    Some(GhostHeader {
        size,
        layout: value("LAYOUT"),
        block_order: value("BLOCK_ORDER"),
    })
}

/// Reads the first IFD from `buf`, which holds the file's bytes starting at offset `buf_start`.
pub(super) fn read_ifd(
    header: &TiffHeader,
    buf: &[u8],
    buf_start: u64,
) -> Result<IfdSummary, SniffError> {
    let r = Reader {
        buf,
        byte_order: header.byte_order,
    };
    let big = header.format == TiffFormat::BigTiff;
    let at = header
        .first_ifd_offset
        .checked_sub(buf_start)
        .ok_or_else(|| SniffError::Malformed("IFD lies before the bytes given".into()))?
        as usize;
    let outside = || {
        SniffError::Malformed(format!(
            "IFD at offset {} lies outside the {} bytes read from offset {buf_start}",
            header.first_ifd_offset,
            buf.len()
        ))
    };
    let (count, entries_at, entry_len) = if big {
        (r.u64(at).ok_or_else(outside)?, at + 8, 20usize)
    } else {
        (r.u16(at).ok_or_else(outside)? as u64, at + 2, 12usize)
    };
    if count == 0 || count > 4096 {
        return Err(SniffError::Malformed(format!(
            "IFD at offset {} declares {count} entries",
            header.first_ifd_offset
        )));
    }
    let mut s = IfdSummary {
        entries: count,
        ..Default::default()
    };
    for i in 0..count as usize {
        let e = entries_at + i * entry_len;
        let tag = r.u16(e).ok_or_else(outside)?;
        let typ = r.u16(e + 2).ok_or_else(outside)?;
        let (n, value_at) = if big {
            (r.u64(e + 4).ok_or_else(outside)?, e + 12)
        } else {
            (r.u32(e + 4).ok_or_else(outside)? as u64, e + 8)
        };
        let field = Field {
            typ,
            count: n,
            value_at,
            big,
        };
        match tag {
            256 => s.width = field.first(&r, buf_start),
            257 => s.height = field.first(&r, buf_start),
            259 => s.compression = field.first(&r, buf_start),
            277 => s.samples_per_pixel = field.first(&r, buf_start),
            322 => s.tile_width = field.first(&r, buf_start),
            323 => s.tile_height = field.first(&r, buf_start),
            273 | 324 => {
                if tag == 273 {
                    s.striped = true;
                } else {
                    s.tiled = true;
                }
                if let Some(min) = field.min(&r, buf_start) {
                    s.first_data_offset = Some(s.first_data_offset.map_or(min, |m| m.min(min)));
                }
            }
            33550 | 33922 | 34264 | 34735 => s.geotiff = true,
            _ => {}
        }
    }
    let next_at = entries_at + count as usize * entry_len;
    s.next_ifd_offset = if big {
        r.u64(next_at).unwrap_or(0)
    } else {
        r.u32(next_at).unwrap_or(0) as u64
    };
    Ok(s)
}

/// Combines the header and (when read) the first IFD into a verdict.
pub(super) fn classify(header: &TiffHeader, ifd: Option<IfdSummary>) -> TiffInfo {
    let layout = header.ghost.as_ref().and_then(|g| g.layout.clone());
    let ghost_says_ifds_first = layout.as_deref() == Some("IFDS_BEFORE_DATA");
    let tiled = ifd.as_ref().is_some_and(|i| i.tiled);
    let ifd_first = match ifd.as_ref().and_then(|i| i.first_data_offset) {
        Some(data) => header.first_ifd_offset < data,
        None => ghost_says_ifds_first,
    };
    let (looks_like_cog, cog_reason) = match (&ifd, tiled, ifd_first || ghost_says_ifds_first) {
        (None, _, true) => (
            true,
            "ghost header says IFDS_BEFORE_DATA (IFD not read)".to_string(),
        ),
        (None, _, false) => (false, "IFD could not be read".to_string()),
        (Some(_), false, _) => (false, "striped, not tiled".to_string()),
        (Some(_), true, false) => (
            false,
            format!(
                "tiled, but the first IFD (offset {}) comes after the image data",
                header.first_ifd_offset
            ),
        ),
        (Some(_), true, true) if header.ghost.is_some() => (
            true,
            "tiled, IFD before the image data, GDAL ghost header".to_string(),
        ),
        (Some(_), true, true) => (true, "tiled, IFD before the image data".to_string()),
    };
    TiffInfo {
        format: header.format,
        byte_order: header.byte_order,
        first_ifd_offset: header.first_ifd_offset,
        ghost_header: header.ghost.is_some(),
        layout,
        ifd_first,
        tiled,
        ifd,
        looks_like_cog,
        cog_reason,
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    byte_order: ByteOrder,
}

impl Reader<'_> {
    fn bytes<const N: usize>(&self, at: usize) -> Option<[u8; N]> {
        self.buf.get(at..at.checked_add(N)?)?.try_into().ok()
    }
    fn u16(&self, at: usize) -> Option<u16> {
        let b = self.bytes::<2>(at)?;
        Some(match self.byte_order {
            ByteOrder::LittleEndian => u16::from_le_bytes(b),
            ByteOrder::BigEndian => u16::from_be_bytes(b),
        })
    }
    fn u32(&self, at: usize) -> Option<u32> {
        let b = self.bytes::<4>(at)?;
        Some(match self.byte_order {
            ByteOrder::LittleEndian => u32::from_le_bytes(b),
            ByteOrder::BigEndian => u32::from_be_bytes(b),
        })
    }
    fn u64(&self, at: usize) -> Option<u64> {
        let b = self.bytes::<8>(at)?;
        Some(match self.byte_order {
            ByteOrder::LittleEndian => u64::from_le_bytes(b),
            ByteOrder::BigEndian => u64::from_be_bytes(b),
        })
    }
}

/// One IFD entry's value location.
struct Field {
    typ: u16,
    count: u64,
    value_at: usize,
    big: bool,
}

impl Field {
    /// Size of one value of the entry's type (SHORT, LONG, LONG8/IFD8; others are not needed).
    fn size(&self) -> Option<usize> {
        match self.typ {
            3 => Some(2),
            4 | 13 => Some(4),
            16 | 18 => Some(8),
            _ => None,
        }
    }

    /// Where value `i` is within the buffer: inline in the entry when the values fit, else at the
    /// offset the entry holds.
    fn position(&self, r: &Reader<'_>, buf_start: u64, i: u64) -> Option<usize> {
        let size = self.size()? as u64;
        let inline = if self.big { 8 } else { 4 };
        let base = if self.count.checked_mul(size)? <= inline {
            self.value_at as u64
        } else {
            let off = if self.big {
                r.u64(self.value_at)?
            } else {
                r.u32(self.value_at)? as u64
            };
            off.checked_sub(buf_start)?
        };
        usize::try_from(base.checked_add(i.checked_mul(size)?)?).ok()
    }

    fn value(&self, r: &Reader<'_>, buf_start: u64, i: u64) -> Option<u64> {
        let at = self.position(r, buf_start, i)?;
        match self.size()? {
            2 => r.u16(at).map(u64::from),
            4 => r.u32(at).map(u64::from),
            _ => r.u64(at),
        }
    }

    fn first(&self, r: &Reader<'_>, buf_start: u64) -> Option<u64> {
        (self.count > 0)
            .then(|| self.value(r, buf_start, 0))
            .flatten()
    }

    /// Smallest non-zero value (of at most 100,000 read), or None when they are not in the
    /// buffer. Zero offsets are skipped: GDAL writes 0 for the empty tiles of a sparse file.
    fn min(&self, r: &Reader<'_>, buf_start: u64) -> Option<u64> {
        (0..self.count.min(100_000))
            .map(|i| self.value(r, buf_start, i))
            .try_fold(u64::MAX, |m, v| {
                v.map(|v| if v == 0 { m } else { m.min(v) })
            })
            .filter(|m| *m != u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A little-endian classic TIFF: header, 16 bytes of strip data at 8, IFD at 24.
    fn striped_le() -> Vec<u8> {
        let mut b = b"II*\0".to_vec();
        b.extend(24u32.to_le_bytes());
        b.extend([0u8; 16]);
        let entries: [(u16, u16, u32, u32); 4] = [
            (256, 3, 1, 4),
            (257, 3, 1, 4),
            (273, 4, 1, 8),
            (279, 4, 1, 16),
        ];
        b.extend((entries.len() as u16).to_le_bytes());
        for (tag, typ, n, v) in entries {
            b.extend(tag.to_le_bytes());
            b.extend(typ.to_le_bytes());
            b.extend(n.to_le_bytes());
            b.extend(v.to_le_bytes());
        }
        b.extend(0u32.to_le_bytes());
        b
    }

    #[test]
    fn a_striped_tiff_is_not_a_cog() {
        let b = striped_le();
        let h = read_header(&b).unwrap();
        assert_eq!(h.format, TiffFormat::Tiff);
        assert_eq!(h.byte_order, ByteOrder::LittleEndian);
        assert_eq!(h.first_ifd_offset, 24);
        let ifd = read_ifd(&h, &b, 0).unwrap();
        assert!(ifd.striped && !ifd.tiled);
        assert_eq!((ifd.width, ifd.height), (Some(4), Some(4)));
        assert_eq!(ifd.first_data_offset, Some(8));
        let info = classify(&h, Some(ifd));
        assert!(!info.looks_like_cog, "{}", info.cog_reason);
        assert!(!info.ifd_first);
    }

    #[test]
    fn empty_tiles_of_a_sparse_cog_do_not_hide_that_the_ifd_comes_first() {
        // Header, IFD at 8 with TileOffsets [0, 200] (first tile empty) inline as two SHORTs.
        let mut b = b"II*\0".to_vec();
        b.extend(8u32.to_le_bytes());
        let entries: [(u16, u16, u32, [u8; 4]); 3] = [
            (256, 3, 1, [64, 0, 0, 0]),
            (322, 3, 1, [32, 0, 0, 0]),
            (324, 3, 2, [0, 0, 200, 0]),
        ];
        b.extend((entries.len() as u16).to_le_bytes());
        for (tag, typ, n, v) in entries {
            b.extend(tag.to_le_bytes());
            b.extend(typ.to_le_bytes());
            b.extend(n.to_le_bytes());
            b.extend(v);
        }
        b.extend(0u32.to_le_bytes());
        let h = read_header(&b).unwrap();
        let ifd = read_ifd(&h, &b, 0).unwrap();
        assert_eq!(ifd.first_data_offset, Some(200));
        let info = classify(&h, Some(ifd));
        assert!(info.looks_like_cog, "{}", info.cog_reason);
    }

    #[test]
    fn big_endian_and_bigtiff_headers() {
        let mut mm = b"MM\0*".to_vec();
        mm.extend(8u32.to_be_bytes());
        let h = read_header(&mm).unwrap();
        assert_eq!(
            (h.format, h.byte_order, h.first_ifd_offset),
            (TiffFormat::Tiff, ByteOrder::BigEndian, 8)
        );
        let mut big = b"II+\0".to_vec();
        big.extend(8u16.to_le_bytes());
        big.extend(0u16.to_le_bytes());
        big.extend(16u64.to_le_bytes());
        let h = read_header(&big).unwrap();
        assert_eq!((h.format, h.first_ifd_offset), (TiffFormat::BigTiff, 16));
    }

    #[test]
    fn ghost_header_is_read() {
        let text = "LAYOUT=IFDS_BEFORE_DATA\nBLOCK_ORDER=ROW_MAJOR\n";
        let mut b = b"II*\0".to_vec();
        b.extend(200u32.to_le_bytes());
        b.extend(
            format!(
                "GDAL_STRUCTURAL_METADATA_SIZE={:06} bytes\n{text}",
                text.len()
            )
            .bytes(),
        );
        let h = read_header(&b).unwrap();
        let g = h.ghost.clone().unwrap();
        assert_eq!(g.layout.as_deref(), Some("IFDS_BEFORE_DATA"));
        assert_eq!(g.block_order.as_deref(), Some("ROW_MAJOR"));
        assert!(classify(&h, None).looks_like_cog);
    }

    #[test]
    fn not_tiff_and_truncated_inputs_are_errors_not_panics() {
        assert!(matches!(
            read_header(b"\x89PNG\r\n\x1a\n"),
            Err(SniffError::NotTiff(_))
        ));
        assert!(matches!(read_header(b"II"), Err(SniffError::NotTiff(_))));
        assert!(matches!(
            read_header(b"II*\0\x02\0\0\0"),
            Err(SniffError::Malformed(_))
        ));
        let b = striped_le();
        let h = read_header(&b).unwrap();
        assert!(matches!(
            read_ifd(&h, &b[..30], 0),
            Err(SniffError::Malformed(_))
        ));
        for cut in 0..b.len() {
            let _ = read_header(&b[..cut]).map(|h| read_ifd(&h, &b[..cut], 0));
        }
    }
}
