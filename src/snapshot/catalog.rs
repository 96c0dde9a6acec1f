//! What a store holds: complete snapshots (a manifest whose object exists with the recorded size),
//! and leftovers (objects without a manifest, manifests without their object, pending uploads).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::manifest::{id_time, CompressionKind, Manifest};
use super::SnapshotError;
use crate::store::{ObjectStore, PendingUpload};

/// One snapshot or leftover in a store.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotEntry {
    pub id: String,
    pub cluster_id: String,
    pub revision: Option<i64>,
    pub created: Option<DateTime<Utc>>,
    pub db_size: Option<u64>,
    pub stored_size: Option<u64>,
    pub compression: Option<CompressionKind>,
    pub encrypted: bool,
    pub member_name: Option<String>,
    pub etcd_version: Option<String>,
    /// The data object's key.
    pub object_key: Option<String>,
    /// The manifest's key.
    pub manifest_key: Option<String>,
    pub complete: bool,
    /// Why it is not complete.
    pub problem: Option<String>,
    #[serde(skip)]
    pub manifest: Option<Manifest>,
}

impl SnapshotEntry {
    /// An incomplete entry: an object or upload that is not part of a complete snapshot.
    fn leftover(
        cluster: &str,
        id: String,
        created: Option<DateTime<Utc>>,
        object_key: &str,
        stored_size: Option<u64>,
        problem: String,
    ) -> Self {
        SnapshotEntry {
            id,
            cluster_id: cluster.to_string(),
            revision: None,
            created,
            db_size: None,
            stored_size,
            compression: None,
            encrypted: object_key.ends_with(".age"),
            member_name: None,
            etcd_version: None,
            object_key: Some(object_key.to_string()),
            manifest_key: None,
            complete: false,
            problem: Some(problem),
            manifest: None,
        }
    }
}

/// Everything in a store, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct Catalog {
    pub entries: Vec<SnapshotEntry>,
    pub pending: Vec<PendingUpload>,
}

impl Catalog {
    /// Unfinished uploads as entries, for listings that show everything.
    pub fn pending_entries(&self) -> impl Iterator<Item = SnapshotEntry> + '_ {
        self.pending.iter().map(|p| {
            let (cluster, name) = p.key.split_once('/').unwrap_or(("", &p.key));
            SnapshotEntry::leftover(
                cluster,
                name.split(".db").next().unwrap_or(name).to_string(),
                p.initiated,
                &p.key,
                None,
                format!("upload in progress or abandoned ({})", p.id),
            )
        })
    }

    /// Complete snapshots, newest first.
    pub fn complete(&self) -> impl Iterator<Item = &SnapshotEntry> {
        self.entries.iter().filter(|e| e.complete)
    }

    /// Finds a complete snapshot by id, or the newest with `latest`; `cluster` narrows the search.
    pub fn find(&self, id: &str, cluster: Option<&str>) -> Result<&SnapshotEntry, SnapshotError> {
        let mut candidates = self
            .complete()
            .filter(|e| cluster.is_none_or(|c| e.cluster_id == c))
            .peekable();
        if id == "latest" {
            let clusters: BTreeSet<&str> = self
                .complete()
                .filter(|e| cluster.is_none_or(|c| e.cluster_id == c))
                .map(|e| e.cluster_id.as_str())
                .collect();
            if clusters.len() > 1 {
                return Err(SnapshotError::Usage(format!(
                    "the store holds snapshots of several clusters ({}): pass --cluster-id",
                    clusters.into_iter().collect::<Vec<_>>().join(", ")
                )));
            }
            return candidates.next().ok_or_else(|| {
                SnapshotError::NotFound("the store holds no complete snapshot".into())
            });
        }
        if let Some(e) = candidates.find(|e| e.id == id) {
            return Ok(e);
        }
        match self.entries.iter().find(|e| e.id == id) {
            Some(e) => Err(SnapshotError::NotFound(format!(
                "snapshot {id} is not complete: {}",
                e.problem.clone().unwrap_or_default()
            ))),
            None => Err(SnapshotError::NotFound(format!(
                "no snapshot {id} in the store"
            ))),
        }
    }
}

/// Splits `<cluster>/<name>` keys; anything deeper or shallower is not ours.
fn split_key(key: &str) -> Option<(&str, &str)> {
    let (cluster, name) = key.split_once('/')?;
    (!cluster.is_empty() && !name.contains('/')).then_some((cluster, name))
}

/// Reads the store's listing and every manifest.
pub async fn catalog(store: &dyn ObjectStore) -> Result<Catalog, SnapshotError> {
    let objects = match store.list("").await {
        Ok(o) => o,
        Err(e) if e.is_not_found() => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let sizes: BTreeMap<&str, u64> = objects.iter().map(|o| (o.key.as_str(), o.size)).collect();
    let mut entries = Vec::new();
    let mut referenced: BTreeSet<String> = BTreeSet::new();
    for o in &objects {
        let Some((cluster, name)) = split_key(&o.key) else {
            continue;
        };
        let Some(id) = name.strip_suffix(".json") else {
            continue;
        };
        let mut entry = SnapshotEntry {
            id: id.to_string(),
            cluster_id: cluster.to_string(),
            revision: None,
            created: id_time(id).or(o.modified),
            db_size: None,
            stored_size: None,
            compression: None,
            encrypted: false,
            member_name: None,
            etcd_version: None,
            object_key: None,
            manifest_key: Some(o.key.clone()),
            complete: false,
            problem: None,
            manifest: None,
        };
        match store
            .get(&o.key)
            .await
            .map_err(|e| e.to_string())
            .and_then(|b| Manifest::from_json(&b))
        {
            Err(e) => entry.problem = Some(format!("manifest unreadable: {e}")),
            Ok(m) => {
                referenced.insert(m.object_key.clone());
                entry.revision = Some(m.revision);
                entry.created = Some(m.finished_at);
                entry.db_size = Some(m.db_size);
                entry.stored_size = Some(m.stored_size);
                entry.compression = Some(m.compression.algorithm);
                entry.encrypted = m.encrypted();
                entry.member_name = Some(m.member_name.clone());
                entry.etcd_version = Some(m.etcd_version.clone());
                entry.object_key = Some(m.object_key.clone());
                match sizes.get(m.object_key.as_str()) {
                    None => entry.problem = Some(format!("object {} is missing", m.object_key)),
                    Some(&s) if s != m.stored_size => {
                        entry.problem = Some(format!(
                            "object {} has {s} bytes, the manifest says {}",
                            m.object_key, m.stored_size
                        ))
                    }
                    Some(_) => entry.complete = true,
                }
                entry.manifest = Some(m);
            }
        }
        entries.push(entry);
    }
    // Data objects no manifest points at: a backup that died before its manifest.
    for o in &objects {
        let Some((cluster, name)) = split_key(&o.key) else {
            continue;
        };
        if name.ends_with(".json") || !name.contains(".db") || referenced.contains(&o.key) {
            continue;
        }
        let id = name.split(".db").next().unwrap_or(name).to_string();
        entries.push(SnapshotEntry::leftover(
            cluster,
            id.clone(),
            id_time(&id).or(o.modified),
            &o.key,
            Some(o.size),
            "no manifest: the backup did not finish".to_string(),
        ));
    }
    entries.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| b.id.cmp(&a.id)));
    let pending = match store.pending_uploads("").await {
        Ok(p) => p,
        Err(e) if e.is_not_found() => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    Ok(Catalog { entries, pending })
}
