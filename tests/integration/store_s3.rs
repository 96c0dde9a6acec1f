//! The S3 store against a real SeaweedFS server with signed requests. Every test starts its own
//! server (a few seconds) so a killed server or a wrong key touches nobody else.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use aws_sdk_s3::config::Credentials;
use bytes::Bytes;
use cpkeep::sandbox::{S3Sandbox, S3SandboxOptions};
use cpkeep::store::{ObjectStore, S3Options, S3Store, StoreError};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

const MIB: usize = 1024 * 1024;
const CHUNK: usize = 64 * 1024;

/// The weed binary: `$CPKEEP_WEED`, else tools/bin/weed of this checkout, else `weed` on PATH.
fn weed() -> Option<PathBuf> {
    if std::env::var_os("CPKEEP_WEED").is_some_and(|v| !v.is_empty()) {
        return None;
    }
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/bin/weed");
    local.is_file().then_some(local)
}

/// Starts SeaweedFS; fails the test (with how to install it) when it is missing or does not start.
async fn seaweed() -> S3Sandbox {
    let opts = S3SandboxOptions {
        weed: weed(),
        ..S3SandboxOptions::default()
    };
    match S3Sandbox::start(opts).await {
        Ok(s) => s,
        Err(e) => panic!("SeaweedFS did not start: {e}"),
    }
}

/// A server also serving HTTPS (certificate from its own CA), with `bucket` created in it.
async fn seaweed_tls_with(bucket: &str) -> S3Sandbox {
    let opts = S3SandboxOptions {
        weed: weed(),
        tls: true,
        ..S3SandboxOptions::default()
    };
    let sb = match S3Sandbox::start(opts).await {
        Ok(s) => s,
        Err(e) => panic!("SeaweedFS with TLS did not start: {e}"),
    };
    sb.create_bucket(bucket)
        .await
        .unwrap_or_else(|e| panic!("create bucket {bucket}: {e}"));
    sb
}

/// A server with `bucket` created in it.
async fn seaweed_with(bucket: &str) -> S3Sandbox {
    let sb = seaweed().await;
    sb.create_bucket(bucket)
        .await
        .unwrap_or_else(|e| panic!("create bucket {bucket}: {e}"));
    sb
}

/// Options with 5 MiB parts, the smallest S3 allows.
fn small_parts(sb: &S3Sandbox, in_flight: usize) -> S3Options {
    S3Options {
        part_size: 5 * MIB,
        max_in_flight: in_flight,
        ..sb.s3_options()
    }
}

async fn store_with(sb: &S3Sandbox, bucket: &str, prefix: &str, opts: &S3Options) -> S3Store {
    S3Store::connect_with(bucket, prefix, opts, sb.config_loader())
        .await
        .unwrap()
}

/// Deterministic, incompressible test bytes.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Every key in the bucket, as the server has it.
async fn raw_keys(sb: &S3Sandbox, bucket: &str) -> Vec<String> {
    let out = sb
        .client()
        .list_objects_v2()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    let mut keys: Vec<String> = out
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    keys.sort();
    keys
}

fn assert_one_short_line(e: &StoreError) -> String {
    let text = e.to_string();
    assert!(!text.contains('\n'), "multi-line error: {text}");
    assert!(text.len() < 600, "long error: {text}");
    for dump in [
        "ServiceError {",
        "DispatchFailure {",
        "ErrorMetadata",
        "Some(",
    ] {
        assert!(!text.contains(dump), "SDK dump in error: {text}");
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_list_delete_round_trip() {
    let sb = seaweed_with("round-trip").await;
    let store = sb.connect("round-trip", "prod/eu").await.unwrap();
    assert_eq!(store.url(), "s3://round-trip/prod/eu");

    let manifest = Bytes::from_static(br#"{"snapshot":"c1/one.db.zst"}"#);
    store.put("c1/one.json", manifest.clone()).await.unwrap();
    store
        .put("c2/two.json", Bytes::from_static(b"2"))
        .await
        .unwrap();
    // A neighbour whose key shares the prefix's characters but not its directory.
    sb.client()
        .put_object()
        .bucket("round-trip")
        .key("prod/eux/stray")
        .body(Bytes::from_static(b"x").into())
        .send()
        .await
        .unwrap();
    assert_eq!(
        raw_keys(&sb, "round-trip").await,
        [
            "prod/eu/c1/one.json",
            "prod/eu/c2/two.json",
            "prod/eux/stray"
        ]
    );

    assert_eq!(store.get("c1/one.json").await.unwrap(), manifest);
    let mut all = store.list("").await.unwrap();
    all.sort_by(|a, b| a.key.cmp(&b.key));
    let keys: Vec<&str> = all.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["c1/one.json", "c2/two.json"]);
    assert_eq!(all[0].size, manifest.len() as u64);
    assert!(all[0].modified.is_some());
    let c1 = store.list("c1/").await.unwrap();
    assert_eq!(c1.len(), 1);
    assert_eq!(c1[0].key, "c1/one.json");
    assert!(store.list("c3/").await.unwrap().is_empty());

    store.delete("c1/one.json").await.unwrap();
    let gone = store.get("c1/one.json").await.unwrap_err();
    assert!(gone.is_not_found(), "{gone}");
    match store.open("c1/one.json").await {
        Err(e) => assert!(e.is_not_found(), "{e}"),
        Ok(_) => panic!("opened a deleted object"),
    }
    // Deleting a missing object is fine.
    store.delete("c1/one.json").await.unwrap();
    store.delete("never/there").await.unwrap();
    assert_eq!(store.list("").await.unwrap().len(), 1);

    // Without a prefix, keys are used as they are.
    let bare = sb.connect("round-trip", "").await.unwrap();
    assert_eq!(bare.url(), "s3://round-trip");
    bare.put("top.json", Bytes::from_static(b"t"))
        .await
        .unwrap();
    assert!(raw_keys(&sb, "round-trip")
        .await
        .contains(&"top.json".to_string()));
    let listed = bare.list("prod/").await.unwrap();
    let mut keys: Vec<&str> = listed.iter().map(|o| o.key.as_str()).collect();
    keys.sort();
    assert_eq!(keys, ["prod/eu/c2/two.json", "prod/eux/stray"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_upload_of_three_and_a_half_parts_reads_back_identical() {
    let sb = seaweed_with("multipart").await;
    let store = store_with(&sb, "multipart", "backups", &small_parts(&sb, 2)).await;
    let len = 7 * MIB / 2 * 5; // 17.5 MiB: 3 full parts of 5 MiB and a half one
    let bytes = data(len, 7);

    let mut w = store.create("c1/big.db.zst").await.unwrap();
    for chunk in bytes.chunks(CHUNK) {
        w.write(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    // Invisible until finished; the multipart upload shows as pending.
    assert!(store.list("").await.unwrap().is_empty());
    let pending = store.pending_uploads("c1/").await.unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0].key, "c1/big.db.zst");

    let receipt = w.finish().await.unwrap();
    assert_eq!(receipt.key, "c1/big.db.zst");
    assert_eq!(receipt.size, len as u64);
    assert_eq!(receipt.parts, 4);
    assert!(store.pending_uploads("").await.unwrap().is_empty());

    let listed = store.list("c1/").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].size, len as u64);

    let mut reader = store.open("c1/big.db.zst").await.unwrap();
    let mut back = Vec::new();
    reader.read_to_end(&mut back).await.unwrap();
    assert_eq!(back.len(), len);
    assert_eq!(Sha256::digest(&back), Sha256::digest(&bytes));
    assert!(back == bytes, "content differs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_up_to_one_part_are_a_single_put() {
    let sb = seaweed_with("single-put").await;
    let store = store_with(&sb, "single-put", "", &small_parts(&sb, 4)).await;

    for (key, len) in [
        ("empty", 0),
        ("small", MIB + 17),
        ("exactly-one-part", 5 * MIB),
    ] {
        let bytes = data(len, len as u64 + 1);
        let mut w = store.create(key).await.unwrap();
        for chunk in bytes.chunks(CHUNK) {
            w.write(Bytes::copy_from_slice(chunk)).await.unwrap();
        }
        // No multipart upload was opened.
        assert!(
            store.pending_uploads("").await.unwrap().is_empty(),
            "{key}: a multipart upload was started"
        );
        let receipt = w.finish().await.unwrap();
        assert_eq!(receipt.parts, 1, "{key}");
        assert_eq!(receipt.size, len as u64, "{key}");
        assert_eq!(&store.get(key).await.unwrap()[..], &bytes[..], "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_leaves_no_pending_upload_and_no_object() {
    let sb = seaweed_with("aborted").await;
    let store = store_with(&sb, "aborted", "p", &small_parts(&sb, 2)).await;

    let mut w = store.create("c1/partial").await.unwrap();
    for chunk in data(12 * MIB, 3).chunks(CHUNK) {
        w.write(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    assert_eq!(store.pending_uploads("").await.unwrap().len(), 1);
    w.abort().await.unwrap();
    assert!(store.pending_uploads("").await.unwrap().is_empty());
    assert!(store.list("").await.unwrap().is_empty());
    assert!(store.get("c1/partial").await.unwrap_err().is_not_found());

    // Aborting before any part went up is fine too.
    let mut w = store.create("c1/tiny").await.unwrap();
    w.write(Bytes::from_static(b"abc")).await.unwrap();
    w.abort().await.unwrap();
    assert!(raw_keys(&sb, "aborted").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_uploads_are_listed_and_abort_pending_removes_them() {
    let sb = seaweed_with("pending").await;
    let store = store_with(&sb, "pending", "prod", &small_parts(&sb, 2)).await;

    // A writer dropped without finish or abort, as a crashed backup would leave it.
    let mut w = store.create("c1/crashed").await.unwrap();
    for chunk in data(11 * MIB, 5).chunks(CHUNK) {
        w.write(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    drop(w);
    // One started by someone else, straight through the SDK, and one outside the store's prefix.
    let started = sb
        .client()
        .create_multipart_upload()
        .bucket("pending")
        .key("prod/c2/other")
        .send()
        .await
        .unwrap();
    sb.client()
        .create_multipart_upload()
        .bucket("pending")
        .key("elsewhere/c1/x")
        .send()
        .await
        .unwrap();

    let mut pending = store.pending_uploads("").await.unwrap();
    pending.sort_by(|a, b| a.key.cmp(&b.key));
    let keys: Vec<&str> = pending.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["c1/crashed", "c2/other"]);
    assert_eq!(pending[1].id, started.upload_id().unwrap());
    assert!(pending.iter().all(|p| !p.id.is_empty()));
    assert!(pending.iter().all(|p| p.initiated.is_some()), "{pending:?}");
    assert_eq!(store.pending_uploads("c1/").await.unwrap().len(), 1);
    assert!(store.pending_uploads("c3/").await.unwrap().is_empty());

    for p in &pending {
        store.abort_pending(p).await.unwrap();
    }
    assert!(store.pending_uploads("").await.unwrap().is_empty());
    // Aborting again is not an error: the upload is gone either way.
    store.abort_pending(&pending[0]).await.unwrap();
    assert!(store.list("").await.unwrap().is_empty());
    // The upload outside the prefix was not touched.
    let outside = sb
        .client()
        .list_multipart_uploads()
        .bucket("pending")
        .send()
        .await
        .unwrap();
    assert_eq!(outside.uploads().len(), 1);
    assert_eq!(outside.uploads()[0].key(), Some("elsewhere/c1/x"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_names_the_signature_error_and_not_the_secret() {
    let sb = seaweed_with("signed").await;
    let wrong = "wrong-secret-7f3a9c1e5b2d4f60";
    let loader = sb.config_loader().credentials_provider(Credentials::new(
        sb.access_key(),
        wrong,
        None,
        None,
        "test",
    ));
    let store = S3Store::connect_with("signed", "p", &sb.s3_options(), loader)
        .await
        .unwrap();

    let started = Instant::now();
    let put = store
        .put("c1/x", Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    let get = store.get("c1/x").await.unwrap_err();
    let list = store.list("").await.unwrap_err();
    // Authentication errors are not retried for long.
    assert!(started.elapsed() < Duration::from_secs(20));
    for e in [&put, &get, &list] {
        let text = assert_one_short_line(e);
        assert!(text.contains("SignatureDoesNotMatch"), "{text}");
        assert!(text.starts_with("s3://signed/p: "), "{text}");
        assert!(!text.contains(wrong), "secret in error: {text}");
        assert!(!text.contains(sb.secret_key()), "secret in error: {text}");
        assert!(!format!("{e:?}").contains(wrong), "secret in Debug: {e:?}");
    }
    assert!(put.to_string().contains("put c1/x"), "{put}");
    assert!(!get.is_not_found());

    // An access key the server does not know.
    let loader = sb.config_loader().credentials_provider(Credentials::new(
        "AKIDUNKNOWN",
        wrong,
        None,
        None,
        "test",
    ));
    let store = S3Store::connect_with("signed", "p", &sb.s3_options(), loader)
        .await
        .unwrap();
    let e = store.get("c1/x").await.unwrap_err();
    let text = assert_one_short_line(&e);
    assert!(text.contains("InvalidAccessKeyId"), "{text}");
    assert!(!text.contains(wrong), "secret in error: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_bucket_is_a_clear_error() {
    let sb = seaweed().await;
    let store = sb.connect("no-such-bucket", "p").await.unwrap();
    let get = store.get("c1/x").await.unwrap_err();
    let put = store
        .put("c1/x", Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    let list = store.list("").await.unwrap_err();
    for e in [&get, &put, &list] {
        let text = assert_one_short_line(e);
        assert!(
            text.contains("NoSuchBucket: bucket \"no-such-bucket\" does not exist"),
            "{text}"
        );
        assert!(
            !e.is_not_found(),
            "a missing bucket is not a missing object: {text}"
        );
    }
    // A write of several parts fails the same way, and leaves nothing behind.
    let store = store_with(&sb, "no-such-bucket", "p", &small_parts(&sb, 2)).await;
    let mut w = store.create("c1/big").await.unwrap();
    let mut failed = None;
    for chunk in data(11 * MIB, 9).chunks(CHUNK) {
        if let Err(e) = w.write(Bytes::copy_from_slice(chunk)).await {
            failed = Some(e);
            break;
        }
    }
    let e = match failed {
        Some(e) => e,
        None => w.finish().await.unwrap_err(),
    };
    assert!(assert_one_short_line(&e).contains("does not exist"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_mid_upload_fails_in_bounded_time() {
    let mut sb = seaweed_with("killed").await;
    let opts = S3Options {
        max_attempts: 3,
        initial_backoff: Some(Duration::from_millis(50)),
        connect_timeout: Some(Duration::from_secs(1)),
        attempt_timeout: Some(Duration::from_secs(5)),
        operation_timeout: Some(Duration::from_secs(15)),
        ..small_parts(&sb, 2)
    };
    let store = store_with(&sb, "killed", "p", &opts).await;
    let bytes = data(40 * MIB, 11);
    let mut w = store.create("c1/doomed").await.unwrap();
    let mut chunks = bytes.chunks(CHUNK);
    // Two parts on their way, so the multipart upload exists.
    for chunk in chunks.by_ref().take(11 * MIB / CHUNK) {
        w.write(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    sb.kill();

    let started = Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(90), async {
        for chunk in chunks {
            if let Err(e) = w.write(Bytes::copy_from_slice(chunk)).await {
                return e;
            }
        }
        match w.finish().await {
            Ok(r) => panic!("finish succeeded on a dead server: {r:?}"),
            Err(e) => e,
        }
    })
    .await;
    let elapsed = started.elapsed();
    let e = outcome.unwrap_or_else(|_| panic!("no error within 90 s of the server's death"));
    let text = assert_one_short_line(&e);
    assert!(
        elapsed < Duration::from_secs(60),
        "took {elapsed:?} to fail: {text}"
    );
    assert!(matches!(e, StoreError::Remote { .. }), "{e:?}");
    assert!(text.starts_with("s3://killed/p: "), "{text}");
    assert!(text.contains("c1/doomed"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_endpoint_is_trusted_through_the_ca_bundle() {
    let sb = seaweed_tls_with("tls-bucket").await;
    let opts = small_parts(&sb, 2);
    assert!(opts
        .endpoint
        .as_deref()
        .unwrap()
        .starts_with("https://127.0.0.1:"));
    assert!(opts.ca_bundle.is_some());
    let store = store_with(&sb, "tls-bucket", "p", &opts).await;
    store
        .put("c1/manifest.json", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    assert_eq!(&store.get("c1/manifest.json").await.unwrap()[..], b"{}");
    let bytes = data(6 * MIB, 13);
    let mut w = store.create("c1/db").await.unwrap();
    for chunk in bytes.chunks(CHUNK) {
        w.write(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    assert_eq!(w.finish().await.unwrap().parts, 2);
    assert!(store.get("c1/db").await.unwrap() == bytes);

    // Without the CA, the server's certificate is refused: an error, quickly, and no panic.
    let untrusted = S3Options {
        ca_bundle: None,
        max_attempts: 2,
        ..opts
    };
    let store = store_with(&sb, "tls-bucket", "p", &untrusted).await;
    let started = Instant::now();
    let e = store.get("c1/manifest.json").await.unwrap_err();
    let text = assert_one_short_line(&e);
    assert!(started.elapsed() < Duration::from_secs(20), "{text}");
    assert!(
        text.to_lowercase().contains("certificate") || text.contains("UnknownIssuer"),
        "{text}"
    );
}
