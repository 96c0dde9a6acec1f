//! What the log records of leases, which the watch does not carry: the granted TTL of every lease a
//! logged put names, asked as soon as the put is seen (a lease granted and revoked within one
//! segment is still recorded), and etcd's lease table at each segment close. Granted TTLs are
//! cached, so a busy lease costs one question per segment at most. Never prints; a failed question
//! is a tracing warning and a segment without (or with a partial) table, never an error.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::Utc;
use etcd_client::{Client, LeaseTimeToLiveOptions};

use crate::etcd::ConnectionOptions;
use crate::revlog::{LeaseEntry, LeaseTable};

/// Leases asked at once when the table is taken.
const CONCURRENCY: usize = 8;

/// The leases seen in the current segment and the granted TTLs learned so far.
#[derive(Default)]
pub struct LeaseBook {
    /// Lease id → granted TTL, as etcd answered when first asked.
    granted: HashMap<i64, i64>,
    /// Leases named by puts of the open segment.
    seen: BTreeSet<i64>,
}

impl LeaseBook {
    /// Notes a lease a logged put names; asks its TTL now when it is new, so that it is known even
    /// if the lease is revoked before the segment closes.
    pub async fn note(&mut self, id: i64, client: &mut Client, conn: &ConnectionOptions) {
        self.seen.insert(id);
        if self.granted.contains_key(&id) {
            return;
        }
        let ask = client.lease_time_to_live(id, None);
        match tokio::time::timeout(conn.timeout, ask).await {
            Ok(Ok(r)) if r.ttl() >= 0 => {
                self.granted.insert(id, r.granted_ttl());
            }
            // Already gone: recorded at close with remaining −1 and whatever TTL etcd said.
            Ok(Ok(r)) => {
                self.granted.insert(id, r.granted_ttl());
            }
            Ok(Err(e)) => tracing::warn!(lease = format!("{id:x}"), "lease TTL not read: {e}"),
            Err(_) => tracing::warn!(lease = format!("{id:x}"), "lease TTL not read: timed out"),
        }
    }

    /// etcd's lease table now (every listed lease with its TTLs and keys), plus the leases this
    /// segment's puts named that etcd no longer lists (remaining −1, the granted TTL asked when
    /// first seen). `None` when the listing itself fails.
    pub async fn table(
        &mut self,
        client: &mut Client,
        conn: &ConnectionOptions,
    ) -> Option<LeaseTable> {
        let listing = match tokio::time::timeout(conn.timeout, client.leases()).await {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => {
                tracing::warn!("lease table not taken, the segment has none: {e}");
                return None;
            }
            Err(_) => {
                tracing::warn!("lease table not taken, the segment has none: listing timed out");
                return None;
            }
        };
        let taken_at = Utc::now();
        let header_revision = listing.header().map_or(0, |h| h.revision());
        let ids: Vec<i64> = listing.leases().iter().map(|l| l.id()).collect();
        let mut table: BTreeMap<i64, LeaseEntry> = BTreeMap::new();
        let asks = ids.clone().into_iter().map(|id| {
            let mut lc = client.lease_client();
            async move {
                let opts = LeaseTimeToLiveOptions::new().with_keys();
                let r = tokio::time::timeout(conn.timeout, lc.time_to_live(id, Some(opts))).await;
                (id, r)
            }
        });
        use futures::stream::StreamExt;
        let answers: Vec<_> = futures::stream::iter(asks)
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for (id, answer) in answers {
            match answer {
                Ok(Ok(r)) => {
                    self.granted.insert(id, r.granted_ttl());
                    table.insert(
                        id,
                        LeaseEntry {
                            id,
                            granted_ttl: r.granted_ttl(),
                            remaining_ttl: r.ttl(),
                            keys: r.keys().to_vec(),
                        },
                    );
                }
                Ok(Err(e)) => tracing::warn!(lease = format!("{id:x}"), "lease not read: {e}"),
                Err(_) => tracing::warn!(lease = format!("{id:x}"), "lease not read: timed out"),
            }
        }
        for &id in &self.seen {
            if let (false, Some(&granted_ttl)) = (table.contains_key(&id), self.granted.get(&id)) {
                table.insert(
                    id,
                    LeaseEntry {
                        id,
                        granted_ttl,
                        remaining_ttl: -1,
                        keys: Vec::new(),
                    },
                );
            }
        }
        // The cache keeps only leases etcd still has: a revoked lease never comes back.
        let listed: BTreeSet<i64> = ids.into_iter().collect();
        self.granted.retain(|id, _| listed.contains(id));
        self.seen.clear();
        table.remove(&0);
        Some(LeaseTable {
            taken_at,
            header_revision,
            leases: table.into_values().collect(),
        })
    }
}
