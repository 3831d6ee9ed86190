//! Shared Key authorisation of Blob service requests (the account-key scheme Azurite and local
//! development use): `Authorization: SharedKey {account}:{base64(HMAC-SHA256(key, string_to_sign))}`.
//!
//! The string to sign follows the Storage REST documentation for version 2015-02-21 and later: the
//! verb, eleven standard header values (Content-Length empty when zero), the canonicalized
//! `x-ms-*` headers, then the canonicalized resource (`/{account}{encoded path}` followed by one
//! `\nname:value[,value]` line per query parameter, names lowercased and sorted).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What the signature covers.
#[derive(Debug, Clone)]
pub(super) struct SignInput<'a> {
    /// HTTP verb (`GET`, `HEAD`, `PUT`, `DELETE`).
    pub method: &'a str,
    /// Body length (0 for none).
    pub content_length: u64,
    /// Content-Type header, when sent.
    pub content_type: Option<&'a str>,
    /// Every `x-ms-*` header sent (name, value), in any order and case.
    pub ms_headers: &'a [(String, String)],
    /// Storage account name.
    pub account: &'a str,
    /// Percent-encoded URL path as sent (`/devstoreaccount1/container/a%20b.tif`).
    pub path: &'a str,
    /// Decoded query parameters (name, value).
    pub query: &'a [(String, String)],
}

/// The exact string that is signed.
pub(super) fn string_to_sign(i: &SignInput<'_>) -> String {
    let length = if i.content_length == 0 {
        String::new()
    } else {
        i.content_length.to_string()
    };
    // Content-Encoding, Content-Language, Content-Length, Content-MD5, Content-Type, Date,
    // If-Modified-Since, If-Match, If-None-Match, If-Unmodified-Since, Range. CoreMachine sends
    // x-ms-date and x-ms-range instead of Date and Range, so those two stay empty.
    let standard = [
        "",
        "",
        length.as_str(),
        "",
        i.content_type.unwrap_or(""),
        "",
        "",
        "",
        "",
        "",
        "",
    ];
    let mut s = String::with_capacity(256);
    s.push_str(i.method);
    s.push('\n');
    for v in standard {
        s.push_str(v);
        s.push('\n');
    }
    let mut headers: Vec<(String, String)> = i
        .ms_headers
        .iter()
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), collapse_whitespace(v)))
        .filter(|(k, _)| k.starts_with("x-ms-"))
        .collect();
    headers.sort();
    for (k, v) in headers {
        s.push_str(&k);
        s.push(':');
        s.push_str(&v);
        s.push('\n');
    }
    s.push('/');
    s.push_str(i.account);
    s.push_str(if i.path.is_empty() { "/" } else { i.path });
    let mut params: std::collections::BTreeMap<String, Vec<&str>> = Default::default();
    for (k, v) in i.query {
        params
            .entry(k.to_ascii_lowercase())
            .or_default()
            .push(v.as_str());
    }
    for (k, mut values) in params {
        values.sort_unstable();
        s.push('\n');
        s.push_str(&k);
        s.push(':');
        s.push_str(&values.join(","));
    }
    s
}

fn collapse_whitespace(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The `Authorization` header value for `input` signed with the decoded account `key`.
pub(super) fn authorization(key: &[u8], input: &SignInput<'_>) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(string_to_sign(input).as_bytes());
    let sig = B64.encode(mac.finalize().into_bytes());
    format!("SharedKey {}:{sig}", input.account)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn list_request_string_to_sign_has_sorted_headers_and_query() {
        let headers = pairs(&[
            ("x-ms-version", "2021-08-06"),
            ("X-Ms-Date", "Tue, 01 Dec 2026 07:00:00 GMT"),
            ("x-ms-client-request-id", "  a   b "),
        ]);
        let query = pairs(&[
            ("restype", "container"),
            ("comp", "list"),
            ("Prefix", "raw/2026 q1"),
            ("maxresults", "5000"),
        ]);
        let s = string_to_sign(&SignInput {
            method: "GET",
            content_length: 0,
            content_type: None,
            ms_headers: &headers,
            account: "devstoreaccount1",
            path: "/devstoreaccount1/bronze",
            query: &query,
        });
        let expected = "GET\n\n\n\n\n\n\n\n\n\n\n\n\
            x-ms-client-request-id:a b\n\
            x-ms-date:Tue, 01 Dec 2026 07:00:00 GMT\n\
            x-ms-version:2021-08-06\n\
            /devstoreaccount1/devstoreaccount1/bronze\n\
            comp:list\nmaxresults:5000\nprefix:raw/2026 q1\nrestype:container";
        assert_eq!(s, expected);
    }

    #[test]
    fn body_length_and_type_are_signed_and_zero_length_is_empty() {
        let s = string_to_sign(&SignInput {
            method: "PUT",
            content_length: 12,
            content_type: Some("image/tiff"),
            ms_headers: &[],
            account: "acct",
            path: "/c/a%20b.tif",
            query: &[],
        });
        assert_eq!(
            s,
            "PUT\n\n\n12\n\nimage/tiff\n\n\n\n\n\n\n/acct/c/a%20b.tif"
        );
    }

    #[test]
    fn signature_is_base64_hmac_and_names_the_account() {
        let input = SignInput {
            method: "HEAD",
            content_length: 0,
            content_type: None,
            ms_headers: &[],
            account: "acct",
            path: "/c/b",
            query: &[],
        };
        let a = authorization(b"k1", &input);
        let b = authorization(b"k2", &input);
        assert!(a.starts_with("SharedKey acct:"));
        assert_ne!(a, b, "a different key gives a different signature");
        let sig = a.trim_start_matches("SharedKey acct:");
        assert_eq!(B64.decode(sig).unwrap().len(), 32);
    }
}
