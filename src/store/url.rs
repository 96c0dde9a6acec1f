//! Store URLs: `file:///abs/dir` (or a plain absolute or relative path) and `s3://bucket[/prefix]`.

use std::fmt;
use std::path::PathBuf;

use super::StoreError;

/// A parsed store location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    File(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl StoreUrl {
    pub fn parse(raw: &str) -> Result<Self, StoreError> {
        let bad = |reason: &str| StoreError::BadUrl {
            url: raw.to_string(),
            reason: reason.to_string(),
        };
        if let Some(rest) = raw.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.len() < 3 || bucket.len() > 63 {
                return Err(bad("bucket names have 3 to 63 characters"));
            }
            if !bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            {
                return Err(bad(
                    "bucket names use lowercase letters, digits, '-' and '.'",
                ));
            }
            let prefix = prefix.trim_matches('/').to_string();
            if prefix.split('/').any(|p| p == "." || p == "..") {
                return Err(bad("prefix must not contain . or .. segments"));
            }
            return Ok(StoreUrl::S3 {
                bucket: bucket.to_string(),
                prefix,
            });
        }
        if raw.contains("://") {
            let parsed = url::Url::parse(raw).map_err(|e| bad(&e.to_string()))?;
            if parsed.scheme() != "file" {
                return Err(bad("supported schemes are file:// and s3://"));
            }
            // `file://dir` reads as host `dir`: a store URL names a local, absolute directory.
            if parsed.host_str().is_some_and(|h| h != "localhost") {
                return Err(bad("file URLs are absolute: file:///path/to/dir"));
            }
            if parsed.query().is_some() || parsed.fragment().is_some() {
                return Err(bad("a file URL has no ?query or #fragment"));
            }
            // Percent-escapes decoded (`file:///mnt/etcd%20backups`), as RFC 8089 says.
            let path = parsed
                .to_file_path()
                .map_err(|()| bad("not a local file path"))?;
            return Ok(StoreUrl::File(path));
        }
        if raw.is_empty() {
            return Err(bad("empty"));
        }
        Ok(StoreUrl::File(PathBuf::from(raw)))
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::File(p) => write!(f, "file://{}", p.display()),
            StoreUrl::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            StoreUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::StoreUrl;
    use std::path::PathBuf;

    #[test]
    fn parses() {
        assert_eq!(
            StoreUrl::parse("s3://etcd-backups/prod/eu").unwrap(),
            StoreUrl::S3 {
                bucket: "etcd-backups".into(),
                prefix: "prod/eu".into()
            }
        );
        assert_eq!(
            StoreUrl::parse("file:///var/backups").unwrap(),
            StoreUrl::File(PathBuf::from("/var/backups"))
        );
        assert_eq!(
            StoreUrl::parse("./b").unwrap(),
            StoreUrl::File(PathBuf::from("./b"))
        );
        assert_eq!(
            StoreUrl::parse("file:///mnt/etcd%20backups/%C3%A9t%C3%A9").unwrap(),
            StoreUrl::File(PathBuf::from("/mnt/etcd backups/\u{e9}t\u{e9}"))
        );
        assert_eq!(
            StoreUrl::parse("file://localhost/var/backups").unwrap(),
            StoreUrl::File(PathBuf::from("/var/backups"))
        );
        for bad in [
            "file://host/x",
            "file:///x?y=1",
            "s3://ab",
            "s3://Bad_Bucket",
            "file://rel",
            "gs://x/y",
            "s3://abc/../x",
            "",
        ] {
            assert!(StoreUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
