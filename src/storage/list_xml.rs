//! The `List Blobs` response body (`<EnumerationResults>`), read into [`BlobPage`].

use serde::Deserialize;

use super::{BlobItem, BlobPage};

#[derive(Deserialize)]
struct EnumerationResults {
    // Required: a body without <Blobs> is not a listing (an HTML error page from a proxy, say).
    #[serde(rename = "Blobs")]
    blobs: Blobs,
    #[serde(rename = "NextMarker", default)]
    next_marker: Option<String>,
}

#[derive(Deserialize, Default)]
struct Blobs {
    #[serde(rename = "Blob", default)]
    blob: Vec<BlobXml>,
}

#[derive(Deserialize)]
struct BlobXml {
    #[serde(rename = "Name")]
    name: NameXml,
    #[serde(rename = "Properties", default)]
    properties: PropertiesXml,
}

/// `<Name Encoded="true">` carries a percent-encoded name (names with characters XML cannot hold).
#[derive(Deserialize)]
struct NameXml {
    #[serde(rename = "@Encoded", default)]
    encoded: Option<String>,
    #[serde(rename = "$text", default)]
    text: String,
}

#[derive(Deserialize, Default)]
struct PropertiesXml {
    #[serde(rename = "Content-Length", default)]
    content_length: Option<u64>,
    #[serde(rename = "Content-Type", default)]
    content_type: Option<String>,
    #[serde(rename = "Last-Modified", default)]
    last_modified: Option<String>,
    #[serde(rename = "Etag", default)]
    etag: Option<String>,
    #[serde(rename = "BlobType", default)]
    blob_type: Option<String>,
}

/// Parses one page of a List Blobs response.
pub(crate) fn parse(xml: &str) -> Result<BlobPage, String> {
    let r: EnumerationResults = quick_xml::de::from_str(xml).map_err(|e| {
        format!(
            "{e} (body starts {:?})",
            xml.chars().take(120).collect::<String>()
        )
    })?;
    let mut items = Vec::with_capacity(r.blobs.blob.len());
    for b in r.blobs.blob {
        let name = if b
            .name
            .encoded
            .as_deref()
            .is_some_and(|e| e.eq_ignore_ascii_case("true"))
        {
            percent_encoding::percent_decode_str(&b.name.text)
                .decode_utf8()
                .map_err(|e| format!("encoded blob name {:?}: {e}", b.name.text))?
                .into_owned()
        } else {
            b.name.text
        };
        items.push(BlobItem {
            name,
            size: b.properties.content_length.unwrap_or(0),
            content_type: b.properties.content_type.filter(|s| !s.is_empty()),
            last_modified: b.properties.last_modified.as_deref().and_then(http_date),
            etag: b.properties.etag,
            blob_type: b.properties.blob_type,
        });
    }
    Ok(BlobPage {
        items,
        next_marker: r.next_marker.filter(|m| !m.trim().is_empty()),
    })
}

/// `Tue, 01 Dec 2026 07:00:00 GMT` → RFC 3339 (UTC).
pub(crate) fn http_date(s: &str) -> Option<String> {
    chrono::DateTime::parse_from_rfc2822(s.trim())
        .ok()
        .map(|d| {
            d.with_timezone(&chrono::Utc)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_with_a_next_marker() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?>
<EnumerationResults ServiceEndpoint="http://127.0.0.1:10000/devstoreaccount1" ContainerName="bronze">
  <Prefix>raw/</Prefix><MaxResults>2</MaxResults>
  <Blobs>
    <Blob><Name>raw/a.tif</Name><Properties><Creation-Time>Tue, 01 Dec 2026 07:00:00 GMT</Creation-Time><Last-Modified>Tue, 01 Dec 2026 07:00:01 GMT</Last-Modified><Etag>0x8D</Etag><Content-Length>1024</Content-Length><Content-Type>image/tiff</Content-Type><BlobType>BlockBlob</BlobType></Properties><OrMetadata/></Blob>
    <Blob><Name Encoded="true">raw/%EF%BF%BEodd.txt</Name><Properties><Content-Length>0</Content-Length><Content-Type/></Properties></Blob>
  </Blobs>
  <NextMarker>2!raw/b</NextMarker>
</EnumerationResults>"#;
        let p = parse(xml).unwrap();
        assert_eq!(p.items.len(), 2);
        assert_eq!(p.items[0].name, "raw/a.tif");
        assert_eq!(p.items[0].size, 1024);
        assert_eq!(p.items[0].content_type.as_deref(), Some("image/tiff"));
        assert_eq!(
            p.items[0].last_modified.as_deref(),
            Some("2026-12-01T07:00:01Z")
        );
        assert_eq!(p.items[1].name, "raw/\u{FFFE}odd.txt");
        assert_eq!(p.items[1].content_type, None);
        assert_eq!(p.next_marker.as_deref(), Some("2!raw/b"));
    }

    #[test]
    fn an_empty_last_page() {
        let xml =
            r#"<EnumerationResults ContainerName="c"><Blobs /><NextMarker /></EnumerationResults>"#;
        let p = parse(xml).unwrap();
        assert!(p.items.is_empty());
        assert_eq!(p.next_marker, None);
    }

    #[test]
    fn garbage_is_an_error_that_quotes_the_body() {
        let e = parse("<html>gateway</html>").unwrap_err();
        assert!(e.contains("gateway"), "{e}");
    }
}
