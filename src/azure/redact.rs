//! Redaction of secrets from error text: the one place that decides what of a URL or a
//! connection-string fragment may appear in an error, a stored `error_details` or a log line.
//!
//! Why: a SAS travels in the query string (`...&sig=SECRET`), and `reqwest`'s errors print the
//! URL they were about. Every error text that can hold a URL goes through [`redact`] before it
//! leaves the Azure clients, so it is never stored in tasks, jobs or job_events, answered by the
//! API, or logged.

use std::sync::LazyLock;

use regex::Regex;

/// What replaces a URL's query string.
pub(crate) const QUERY_REDACTED: &str = "[query redacted]";
/// What replaces the value of a secret `name=value` pair.
pub(crate) const VALUE_REDACTED: &str = "[redacted]";

/// A URL with a query string: the query (up to whitespace, a quote or a closing bracket) goes.
static URL_QUERY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)\b((?:https?|wss?|sb|amqps?)://[^\s?#"'<>()]*)\?[^\s#"'<>()]*"#)
        .expect("the URL pattern compiles")
});

/// `name=value` pairs that hold a secret outside a URL: SAS fields (`sig`, `se`, `skoid`, ...),
/// connection-string keys, function keys (`code`), passwords.
static SECRET_PAIR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)\b(sig|signature|se|st|skoid|sktid|skt|ske|sks|skv|saoid|suoid|accountkey|sharedaccesskey|sharedaccesssignature|code|password|pwd)=[^&;\s"'<>()]+"#,
    )
    .expect("the secret pattern compiles")
});

/// `text` with every URL's query string and every secret `name=value` value replaced.
pub(crate) fn redact(text: &str) -> String {
    let once = URL_QUERY.replace_all(text, format!("$1?{QUERY_REDACTED}").as_str());
    SECRET_PAIR
        .replace_all(&once, format!("$1={VALUE_REDACTED}").as_str())
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sas_url_in_a_reqwest_error_loses_its_query() {
        let e = "error sending request for url (http://127.0.0.1:1/acct/bronze?restype=container&comp=list&sv=2022-11-02&se=2030-01-01T00%3A00%3A00Z&skoid=abc&sig=SECRETSIG%3D): client error (Connect)";
        let r = redact(e);
        assert!(!r.contains("SECRETSIG"), "{r}");
        assert!(!r.contains("skoid=abc"), "{r}");
        assert_eq!(
            r,
            "error sending request for url (http://127.0.0.1:1/acct/bronze?[query redacted]): client error (Connect)"
        );
    }

    #[test]
    fn secret_pairs_outside_urls_are_masked_and_the_rest_stays() {
        let r = redact(
            "SharedAccessSignature sr=x&sig=abc%2B&se=1700000000&skn=send; AccountKey=k3y==; base=1; code=fk-1",
        );
        assert_eq!(
            r,
            "SharedAccessSignature sr=x&sig=[redacted]&se=[redacted]&skn=send; AccountKey=[redacted]; base=1; code=[redacted]"
        );
        assert_eq!(redact("no secret here"), "no secret here");
    }
}
