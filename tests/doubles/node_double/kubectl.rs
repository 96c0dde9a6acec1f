//! The kubectl double: `kubectl --kubeconfig F get nodes -o json` lists the Nodes kept in etcd;
//! `kubectl --kubeconfig F apply -f FILE` records FILE under /registry/cpkeep-double/applied/<sha256>.
//! Anything else is an error. The kubeconfig must exist and look like one; the cluster is reached
//! through the etcd access `kubeadm init` left in CLUSTER_DIR (see cluster.rs).

use sha2::Digest;

use crate::cluster::{self, Access};
use crate::config::Config;
use crate::{fail, Res};

pub async fn main(args: Vec<String>) -> Res<()> {
    let config = Config::load()?;
    let mut kubeconfig = None;
    let mut rest = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        if a == "--kubeconfig" {
            kubeconfig = it.next();
        } else if let Some(v) = a.strip_prefix("--kubeconfig=") {
            kubeconfig = Some(v.to_string());
        } else {
            rest.push(a);
        }
    }
    let Some(kc) = kubeconfig else {
        fail!("kubectl double: --kubeconfig is required (the double reads no default kubeconfig)");
    };
    let text = crate::certs::read(&kc)?;
    if !text.contains("clusters:") || !text.contains("users:") {
        fail!("kubectl double: error loading config file {kc:?}: not a kubeconfig");
    }
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    match rest.as_slice() {
        ["get", "nodes", "-o", "json"]
        | ["get", "nodes", "-ojson"]
        | ["get", "nodes", "--output=json"] => {
            let mut c = Access::load(&config)?.connect().await?;
            let items = cluster::list_json(&mut c, cluster::NODES).await?;
            let list = serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": items });
            println!(
                "{}",
                serde_json::to_string_pretty(&list).map_err(|e| e.to_string())?
            );
            Ok(())
        }
        ["apply", "-f", file] | ["apply", "--filename", file] => {
            let body = match std::fs::read(file) {
                Ok(b) => b,
                Err(e) => fail!("kubectl double: error: the path {file:?} does not exist: {e}"),
            };
            let sum = hex::encode(sha2::Sha256::digest(&body));
            let mut c = Access::load(&config)?.connect().await?;
            let v = serde_json::json!({ "file": file, "manifest": String::from_utf8_lossy(&body) });
            cluster::put_json(&mut c, &format!("{}{sum}", cluster::APPLIED), &v).await?;
            println!("applied {file} (kubectl double)");
            Ok(())
        }
        other => fail!("kubectl double: unsupported command {other:?}"),
    }
}
