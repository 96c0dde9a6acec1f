//! The S3 store against a real SeaweedFS server with signed requests.
