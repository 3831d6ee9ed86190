//! A tiny TIFF writer for tests: a 64×64 single-band 8-bit image, uncompressed, either tiled
//! (32×32 tiles) or striped (16 rows per strip), classic TIFF or BigTIFF, either byte order, with
//! the IFD before the image data (as a COG) or after it (as most writers do), and optionally
//! GDAL's ghost header. The files are valid TIFFs that GDAL/libtiff would read.

#[derive(Clone, Copy)]
pub struct TiffSpec {
    pub tiled: bool,
    pub ifd_first: bool,
    pub ghost: bool,
    pub bigtiff: bool,
    pub big_endian: bool,
}

impl TiffSpec {
    /// A COG as GDAL writes it: tiled, ghost header, IFD before the data.
    pub fn cog() -> Self {
        Self {
            tiled: true,
            ifd_first: true,
            ghost: true,
            bigtiff: false,
            big_endian: false,
        }
    }
    /// A plain striped TIFF with its IFD at the end.
    pub fn striped() -> Self {
        Self {
            tiled: false,
            ifd_first: false,
            ghost: false,
            bigtiff: false,
            big_endian: false,
        }
    }
}

const SIZE: u32 = 64;
const BLOCKS: u32 = 4;
const BLOCK_BYTES: u32 = SIZE * SIZE / BLOCKS;
const SHORT: u16 = 3;
const LONG: u16 = 4;
const LONG8: u16 = 16;

struct W {
    be: bool,
    buf: Vec<u8>,
}

impl W {
    fn put(&mut self, at: usize, bytes: &[u8]) {
        if self.buf.len() < at + bytes.len() {
            self.buf.resize(at + bytes.len(), 0);
        }
        self.buf[at..at + bytes.len()].copy_from_slice(bytes);
    }
    fn u16(&mut self, at: usize, v: u16) {
        let b = if self.be {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.put(at, &b);
    }
    fn u32(&mut self, at: usize, v: u32) {
        let b = if self.be {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.put(at, &b);
    }
    fn u64(&mut self, at: usize, v: u64) {
        let b = if self.be {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.put(at, &b);
    }
    /// An offset-sized value (4 bytes classic, 8 BigTIFF).
    fn off(&mut self, big: bool, at: usize, v: u64) {
        if big {
            self.u64(at, v)
        } else {
            self.u32(at, v as u32)
        }
    }
}

/// One IFD entry: tag, type, values.
struct Entry {
    tag: u16,
    typ: u16,
    values: Vec<u64>,
}

pub fn write(spec: TiffSpec) -> Vec<u8> {
    let big = spec.bigtiff;
    let header_len: usize = if big { 16 } else { 8 };
    let ghost = if spec.ghost {
        let text = "LAYOUT=IFDS_BEFORE_DATA\nBLOCK_ORDER=ROW_MAJOR\nBLOCK_LEADER=SIZE_AS_UINT4\nBLOCK_TRAILER=LAST_4_BYTES_REPEATED\nKNOWN_INCOMPATIBLE_EDITION=NO\n";
        format!(
            "GDAL_STRUCTURAL_METADATA_SIZE={:06} bytes\n{text}",
            text.len()
        )
        .into_bytes()
    } else {
        Vec::new()
    };
    let off_type = if big { LONG8 } else { LONG };
    let data_len = (BLOCKS * BLOCK_BYTES) as usize;
    let mut entries = vec![
        Entry {
            tag: 256,
            typ: SHORT,
            values: vec![SIZE as u64],
        },
        Entry {
            tag: 257,
            typ: SHORT,
            values: vec![SIZE as u64],
        },
        Entry {
            tag: 258,
            typ: SHORT,
            values: vec![8],
        },
        Entry {
            tag: 259,
            typ: SHORT,
            values: vec![1],
        },
        Entry {
            tag: 262,
            typ: SHORT,
            values: vec![1],
        },
        Entry {
            tag: 277,
            typ: SHORT,
            values: vec![1],
        },
    ];
    // Offsets are filled in once the layout is known (index of the offsets entry below).
    let offsets_tag = if spec.tiled {
        entries.push(Entry {
            tag: 322,
            typ: SHORT,
            values: vec![32],
        });
        entries.push(Entry {
            tag: 323,
            typ: SHORT,
            values: vec![32],
        });
        entries.push(Entry {
            tag: 324,
            typ: off_type,
            values: vec![0; BLOCKS as usize],
        });
        entries.push(Entry {
            tag: 325,
            typ: LONG,
            values: vec![BLOCK_BYTES as u64; BLOCKS as usize],
        });
        324
    } else {
        entries.push(Entry {
            tag: 273,
            typ: off_type,
            values: vec![0; BLOCKS as usize],
        });
        entries.push(Entry {
            tag: 278,
            typ: SHORT,
            values: vec![16],
        });
        entries.push(Entry {
            tag: 279,
            typ: LONG,
            values: vec![BLOCK_BYTES as u64; BLOCKS as usize],
        });
        273
    };
    entries.push(Entry {
        tag: 34735,
        typ: SHORT,
        values: vec![1, 1, 0, 0],
    });
    entries.sort_by_key(|e| e.tag);

    let entry_len = if big { 20 } else { 12 };
    let inline = if big { 8 } else { 4 };
    let count_len = if big { 8 } else { 2 };
    let ifd_len = count_len + entries.len() * entry_len + inline;
    let value_size = |t: u16| match t {
        SHORT => 2,
        LONG => 4,
        _ => 8,
    };
    let external_len: usize = entries
        .iter()
        .map(|e| e.values.len() * value_size(e.typ))
        .filter(|n| *n > inline)
        .sum();
    let (ifd_at, data_at) = if spec.ifd_first {
        let ifd_at = header_len + ghost.len();
        (ifd_at, ifd_at + ifd_len + external_len)
    } else {
        let data_at = header_len + ghost.len();
        (data_at + data_len, data_at)
    };
    for e in entries.iter_mut().filter(|e| e.tag == offsets_tag) {
        for (i, v) in e.values.iter_mut().enumerate() {
            *v = (data_at + i * BLOCK_BYTES as usize) as u64;
        }
    }

    let mut w = W {
        be: spec.big_endian,
        buf: Vec::new(),
    };
    w.put(0, if spec.big_endian { b"MM" } else { b"II" });
    if big {
        w.u16(2, 43);
        w.u16(4, 8);
        w.u16(6, 0);
        w.u64(8, ifd_at as u64);
    } else {
        w.u16(2, 42);
        w.u32(4, ifd_at as u32);
    }
    w.put(header_len, &ghost);
    if big {
        w.u64(ifd_at, entries.len() as u64)
    } else {
        w.u16(ifd_at, entries.len() as u16)
    }
    let mut external_at = ifd_at + ifd_len;
    for (i, e) in entries.iter().enumerate() {
        let at = ifd_at + count_len + i * entry_len;
        w.u16(at, e.tag);
        w.u16(at + 2, e.typ);
        let value_at = if big {
            w.u64(at + 4, e.values.len() as u64);
            at + 12
        } else {
            w.u32(at + 4, e.values.len() as u32);
            at + 8
        };
        let size = value_size(e.typ);
        let target = if e.values.len() * size <= inline {
            value_at
        } else {
            w.off(big, value_at, external_at as u64);
            let t = external_at;
            external_at += e.values.len() * size;
            t
        };
        for (j, v) in e.values.iter().enumerate() {
            match size {
                2 => w.u16(target + j * 2, *v as u16),
                4 => w.u32(target + j * 4, *v as u32),
                _ => w.u64(target + j * 8, *v),
            }
        }
    }
    w.off(big, ifd_at + count_len + entries.len() * entry_len, 0);
    // Pixel data: a gradient, so the blocks are not all zeros.
    let pixels: Vec<u8> = (0..data_len).map(|i| (i % 251) as u8).collect();
    w.put(data_at, &pixels);
    w.buf
}
