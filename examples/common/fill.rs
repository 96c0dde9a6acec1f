//! Shared by the benchmark examples: Kubernetes-like values and filling a sandbox to a db size.

use std::time::Duration;

use cpkeep::sandbox::Sandbox;
use etcd_client::PutOptions;

/// A ConfigMap-like JSON object of about `size` bytes that compresses like a real cluster's.
pub fn value(i: u64, size: usize) -> String {
    let words = [
        "app",
        "frontend",
        "backend",
        "kube-system",
        "default",
        "monitoring",
        "nginx",
        "redis",
    ];
    let w = |n: u64| words[(n % words.len() as u64) as usize];
    let mut s = format!(
        "{{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"{}-{i}\",\"namespace\":\"{}\",\"uid\":\"{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}\",\"resourceVersion\":\"{}\",\"labels\":{{\"app.kubernetes.io/name\":\"{}\",\"tier\":\"{}\"}},\"managedFields\":[{{\"manager\":\"kubectl-client-side-apply\",\"operation\":\"Update\",\"apiVersion\":\"v1\",\"fieldsType\":\"FieldsV1\"}}]}},\"data\":{{",
        w(i),
        w(i / 7),
        i.wrapping_mul(2654435761) as u32,
        i % 65536,
        i % 4096,
        (i * 7) % 4096,
        i.wrapping_mul(0x9E3779B97F4A7C15) & 0xffff_ffff_ffff,
        i + 1000,
        w(i / 3),
        w(i / 5)
    );
    // Pseudo-random base64-ish runs (uids, tokens, hashes) make the data compress like a real
    // cluster's (zstd -3 about 4-5x).
    let mut x = i.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut k = 0;
    while s.len() < size {
        s.push_str(&format!(
            "\"key-{k}\":\"{} {} {} ",
            w(x),
            w(x >> 8),
            w(x >> 16)
        ));
        for _ in 0..10 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            s.push(alphabet[(x % 64) as usize] as char);
        }
        s.push_str("\",");
        k += 1;
    }
    s.push_str("\"end\":\"\"}}");
    s
}

/// Fills the sandbox until its db holds `target` bytes.
pub async fn fill(
    sb: &Sandbox,
    target: u64,
    size: usize,
) -> Result<u64, Box<dyn std::error::Error>> {
    let conn = sb.connection(Duration::from_secs(30))?;
    let client = cpkeep::etcd::connect(&conn.endpoints[0], &conn).await?;
    let mut next: u64 = 0;
    loop {
        let mut m = client.maintenance_client();
        let db = m.status().await?.db_size() as u64;
        if db >= target {
            return Ok(next);
        }
        let batch = ((target - db) / size as u64 / 2).clamp(200, 20_000);
        let mut tasks = Vec::new();
        for w in 0..32u64 {
            let mut kv = client.kv_client();
            let (from, to) = (next, next + batch);
            tasks.push(tokio::spawn(async move {
                let mut i = from + w;
                while i < to {
                    let ns = ["default", "kube-system", "monitoring", "apps"][(i % 4) as usize];
                    let key = format!("/registry/configmaps/{ns}/cm-{i:08}");
                    kv.put(key, value(i, size), None::<PutOptions>).await?;
                    i += 32;
                }
                Ok::<(), etcd_client::Error>(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        next += batch;
    }
}
