//! etcd's schema on top of the bbolt reader: the MVCC history in `key` (revision keys and
//! mvccpb.KeyValue values), the `meta` bucket's bookkeeping, leases, alarms, members, auth, the
//! cluster version, and [`status`], which computes exactly what `etcdutl snapshot status` prints.
//!
//! Byte layouts are in docs/FORMAT.md ("etcd's schema inside bbolt"). Protobuf values are decoded
//! with [`super::proto`]; JSON values (members, confState) with serde_json.

use serde::{Deserialize, Serialize};

use super::check::{check_visiting, Problem, ProblemKind, Visit, Visitor};
use super::crc32c::Crc32c;
use super::element::LeafEntry;
use super::error::BoltError;
use super::proto::{Fields, ProtoError};
use super::reader::{Bucket, Cursor, Db};
use super::schema::{
    decode_be_u64, Revision, CONSISTENT_INDEX_KEY, KEY_BUCKET, META_BUCKET, TERM_KEY,
};
use super::source::PageSource;

/// Every top-level bucket etcd 3.4–3.6 creates, in key order.
pub const BUCKETS: [&str; 10] = [
    "alarm",
    "auth",
    "authRoles",
    "authUsers",
    "cluster",
    "key",
    "lease",
    "members",
    "members_removed",
    "meta",
];

pub const LEASE_BUCKET: &[u8] = b"lease";
pub const ALARM_BUCKET: &[u8] = b"alarm";
pub const MEMBERS_BUCKET: &[u8] = b"members";
pub const MEMBERS_REMOVED_BUCKET: &[u8] = b"members_removed";
pub const CLUSTER_BUCKET: &[u8] = b"cluster";
pub const AUTH_BUCKET: &[u8] = b"auth";
pub const AUTH_USERS_BUCKET: &[u8] = b"authUsers";
pub const AUTH_ROLES_BUCKET: &[u8] = b"authRoles";

/// `meta` keys beyond consistent_index and term.
pub const SCHEDULED_COMPACT_KEY: &[u8] = b"scheduledCompactRev";
pub const FINISHED_COMPACT_KEY: &[u8] = b"finishedCompactRev";
pub const CONF_STATE_KEY: &[u8] = b"confState";
pub const STORAGE_VERSION_KEY: &[u8] = b"storageVersion";
/// `cluster` keys.
pub const CLUSTER_VERSION_KEY: &[u8] = b"clusterVersion";
pub const DOWNGRADE_KEY: &[u8] = b"downgrade";
/// `auth` keys.
pub const AUTH_ENABLED_KEY: &[u8] = b"authEnabled";
pub const AUTH_REVISION_KEY: &[u8] = b"authRevision";

/// Errors reading etcd's schema.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error(transparent)]
    Bolt(#[from] BoltError),

    #[error(
        "bbolt integrity check failed: {count} problem(s); first: page {}: {}",
        first.page, first.reason
    )]
    CheckFailed {
        count: u64,
        first: Box<Problem>,
        problems: Vec<Problem>,
    },

    #[error("bbolt file has no `{name}` bucket: not an etcd backend")]
    MissingBucket { name: String },

    #[error("top-level entry `{name}` is not a bucket")]
    NotABucket { name: String },

    #[error("bucket `{bucket}`: key {key}: {reason}")]
    BadValue {
        bucket: String,
        /// The key, in hex.
        key: String,
        reason: String,
    },

    #[error("bucket `{bucket}`: key {key}: {source}")]
    Proto {
        bucket: String,
        key: String,
        #[source]
        source: ProtoError,
    },
}

fn bad(bucket: &[u8], key: &[u8], reason: impl Into<String>) -> EtcdError {
    EtcdError::BadValue {
        bucket: String::from_utf8_lossy(bucket).into_owned(),
        key: hex::encode(key),
        reason: reason.into(),
    }
}

fn proto(bucket: &[u8], key: &[u8]) -> impl FnOnce(ProtoError) -> EtcdError {
    let bucket = String::from_utf8_lossy(bucket).into_owned();
    let key = hex::encode(key);
    move |source| EtcdError::Proto {
        bucket,
        key,
        source,
    }
}

fn required<'db, S: PageSource>(db: &'db Db<S>, name: &[u8]) -> Result<Bucket<'db, S>, EtcdError> {
    db.bucket(name)?.ok_or_else(|| EtcdError::MissingBucket {
        name: String::from_utf8_lossy(name).into_owned(),
    })
}

/// Calls `f` with every plain (non-bucket) entry of top-level bucket `name`, if it exists.
fn for_each_value<S: PageSource>(
    db: &Db<S>,
    name: &[u8],
    mut f: impl FnMut(&[u8], &[u8]) -> Result<(), EtcdError>,
) -> Result<(), EtcdError> {
    let Some(bucket) = db.bucket(name)? else {
        return Ok(());
    };
    let mut c = bucket.cursor();
    while let Some(e) = c.next_entry() {
        let e = e?;
        if !e.is_bucket() {
            f(e.key, e.value)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// mvccpb.KeyValue

// mvccpb.KeyValue, the value of every `key` bucket entry (a tombstone carries only `key`):
//
// | field | name            | type  |
// |-------|-----------------|-------|
// | 1     | key             | bytes |
// | 2     | create_revision | int64 |
// | 3     | mod_revision    | int64 |
// | 4     | version         | int64 |
// | 5     | value           | bytes |
// | 6     | lease           | int64 |
const KV_KEY: u32 = 1;
const KV_CREATE_REVISION: u32 = 2;
const KV_MOD_REVISION: u32 = 3;
const KV_VERSION: u32 = 4;
const KV_VALUE: u32 = 5;
const KV_LEASE: u32 = 6;

/// An mvccpb.KeyValue, borrowed from its page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyValue<'a> {
    pub key: &'a [u8],
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub value: &'a [u8],
    pub lease: i64,
}

impl<'a> KeyValue<'a> {
    /// Decodes a KeyValue. Unknown fields are skipped; for a repeated scalar field the last one
    /// wins (protobuf's rule).
    pub fn decode(buf: &'a [u8]) -> Result<KeyValue<'a>, ProtoError> {
        let mut kv = KeyValue::default();
        for field in Fields::new(buf) {
            let field = field?;
            match field.number {
                KV_KEY => kv.key = field.bytes()?,
                KV_CREATE_REVISION => kv.create_revision = field.int64()?,
                KV_MOD_REVISION => kv.mod_revision = field.int64()?,
                KV_VERSION => kv.version = field.int64()?,
                KV_VALUE => kv.value = field.bytes()?,
                KV_LEASE => kv.lease = field.int64()?,
                _ => {}
            }
        }
        Ok(kv)
    }

    /// Encodes the KeyValue as etcd stores it: fields in number order, zero and empty fields left
    /// out (proto3's rule, which etcd's generated code follows), so that a value rebuilt from a
    /// watch event is the same bytes etcd wrote into the `key` bucket.
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_len(out, KV_KEY, self.key);
        for (number, v) in [
            (KV_CREATE_REVISION, self.create_revision),
            (KV_MOD_REVISION, self.mod_revision),
            (KV_VERSION, self.version),
        ] {
            put_int64(out, number, v);
        }
        put_len(out, KV_VALUE, self.value);
        put_int64(out, KV_LEASE, self.lease);
    }

    pub fn to_owned(&self) -> OwnedKeyValue {
        OwnedKeyValue {
            key: self.key.to_vec(),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
            value: self.value.to_vec(),
            lease: self.lease,
        }
    }
}

/// An mvccpb.KeyValue with its bytes copied out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OwnedKeyValue {
    pub key: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub value: Vec<u8>,
    pub lease: i64,
}

impl OwnedKeyValue {
    /// The same KeyValue, borrowing these bytes.
    pub fn borrow(&self) -> KeyValue<'_> {
        KeyValue {
            key: &self.key,
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
            value: &self.value,
            lease: self.lease,
        }
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A varint field (int64 as two's complement), left out when zero.
fn put_int64(out: &mut Vec<u8>, number: u32, v: i64) {
    if v != 0 {
        put_varint(out, u64::from(number) << 3);
        put_varint(out, v as u64);
    }
}

/// A length-delimited field, left out when empty.
fn put_len(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    if !bytes.is_empty() {
        put_varint(
            out,
            (u64::from(number) << 3) | u64::from(super::proto::WIRE_LEN),
        );
        put_varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }
}

/// The MVCC history: every entry of the `key` bucket in revision order, decoded.
pub struct Revisions<'db, S> {
    cursor: Cursor<'db, S>,
}

/// The `key` bucket's entries, decoded ([`Revisions::next_revision`] borrows, the iterator copies).
pub fn revisions<S: PageSource>(db: &Db<S>) -> Result<Revisions<'_, S>, EtcdError> {
    Ok(Revisions {
        cursor: required(db, KEY_BUCKET)?.cursor(),
    })
}

impl<S: PageSource> Revisions<'_, S> {
    /// The next revision and its KeyValue, borrowed from the page.
    pub fn next_revision(&mut self) -> Option<Result<(Revision, KeyValue<'_>), EtcdError>> {
        let entry = match self.cursor.next_entry()? {
            Ok(e) => e,
            Err(e) => return Some(Err(e.into())),
        };
        Some(decode_revision_entry(entry))
    }
}

fn decode_revision_entry(e: LeafEntry<'_>) -> Result<(Revision, KeyValue<'_>), EtcdError> {
    if e.is_bucket() {
        return Err(bad(KEY_BUCKET, e.key, "a nested bucket, not a revision"));
    }
    let rev =
        Revision::from_key(e.key).ok_or_else(|| bad(KEY_BUCKET, e.key, "not a revision key"))?;
    let kv = KeyValue::decode(e.value).map_err(proto(KEY_BUCKET, e.key))?;
    Ok((rev, kv))
}

impl<S: PageSource> Iterator for Revisions<'_, S> {
    type Item = Result<(Revision, OwnedKeyValue), EtcdError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_revision()
            .map(|r| r.map(|(rev, kv)| (rev, kv.to_owned())))
    }
}

// ---------------------------------------------------------------------------------------------
// meta

/// raftpb.ConfState as etcd stores it in `meta` (JSON, since 3.5).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfState {
    #[serde(default)]
    pub voters: Vec<u64>,
    #[serde(default)]
    pub learners: Vec<u64>,
    #[serde(default)]
    pub voters_outgoing: Vec<u64>,
    #[serde(default)]
    pub learners_next: Vec<u64>,
    #[serde(default)]
    pub auto_leave: bool,
}

/// The `meta` bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EtcdMeta {
    /// Last raft index applied to the backend.
    pub consistent_index: Option<u64>,
    /// Its raft term (3.5+).
    pub term: Option<u64>,
    /// Main revision of the last compaction requested.
    pub scheduled_compact_revision: Option<i64>,
    /// Main revision of the last compaction done.
    pub finished_compact_revision: Option<i64>,
    /// Raft membership (3.5+).
    pub conf_state: Option<ConfState>,
    /// The storage schema version (3.6+), as stored.
    pub storage_version: Option<String>,
}

/// Reads the `meta` bucket.
pub fn meta<S: PageSource>(db: &Db<S>) -> Result<EtcdMeta, EtcdError> {
    let bucket = required(db, META_BUCKET)?;
    let mut m = EtcdMeta::default();
    let mut c = bucket.cursor();
    while let Some(e) = c.next_entry() {
        let e = e?;
        if e.is_bucket() {
            continue;
        }
        let integer = || {
            decode_be_u64(e.value)
                .ok_or_else(|| bad(META_BUCKET, e.key, "not an 8-byte big-endian integer"))
        };
        // etcd writes compaction revisions as revision keys (main, '_', sub 0).
        let compact = || {
            Revision::from_key(e.value)
                .map(|r| r.main)
                .ok_or_else(|| bad(META_BUCKET, e.key, "not a revision"))
        };
        match e.key {
            CONSISTENT_INDEX_KEY => m.consistent_index = Some(integer()?),
            TERM_KEY => m.term = Some(integer()?),
            SCHEDULED_COMPACT_KEY => m.scheduled_compact_revision = Some(compact()?),
            FINISHED_COMPACT_KEY => m.finished_compact_revision = Some(compact()?),
            CONF_STATE_KEY => {
                let cs = serde_json::from_slice(e.value)
                    .map_err(|err| bad(META_BUCKET, e.key, format!("invalid JSON: {err}")))?;
                m.conf_state = Some(cs);
            }
            STORAGE_VERSION_KEY => {
                m.storage_version = Some(String::from_utf8_lossy(e.value).into_owned())
            }
            _ => {}
        }
    }
    Ok(m)
}

// ---------------------------------------------------------------------------------------------
// leases

// leasepb.Lease, the value of a `lease` entry (key: the ID, 8 bytes big-endian):
//
// | field | name         | type  |
// |-------|--------------|-------|
// | 1     | ID           | int64 |
// | 2     | TTL          | int64 |
// | 3     | RemainingTTL | int64 |
const LEASE_ID: u32 = 1;
const LEASE_TTL: u32 = 2;
const LEASE_REMAINING_TTL: u32 = 3;

/// A leasepb.Lease.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Lease {
    pub id: i64,
    pub ttl: i64,
    /// Set only for leases checkpointed with a remaining TTL; 0 otherwise.
    pub remaining_ttl: i64,
}

impl Lease {
    pub fn decode(buf: &[u8]) -> Result<Lease, ProtoError> {
        let mut l = Lease::default();
        for field in Fields::new(buf) {
            let field = field?;
            match field.number {
                LEASE_ID => l.id = field.int64()?,
                LEASE_TTL => l.ttl = field.int64()?,
                LEASE_REMAINING_TTL => l.remaining_ttl = field.int64()?,
                _ => {}
            }
        }
        Ok(l)
    }

    /// The bytes etcd stores for this lease: fields in number order, zeros left out.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_int64(&mut out, LEASE_ID, self.id);
        put_int64(&mut out, LEASE_TTL, self.ttl);
        put_int64(&mut out, LEASE_REMAINING_TTL, self.remaining_ttl);
        out
    }
}

/// The `lease` bucket, in key (ID) order. Each key must be the lease's ID.
pub fn leases<S: PageSource>(db: &Db<S>) -> Result<Vec<Lease>, EtcdError> {
    let mut out = Vec::new();
    for_each_value(db, LEASE_BUCKET, |k, v| {
        let id = decode_be_u64(k).ok_or_else(|| bad(LEASE_BUCKET, k, "not an 8-byte lease ID"))?;
        let lease = Lease::decode(v).map_err(proto(LEASE_BUCKET, k))?;
        if lease.id != id as i64 {
            return Err(bad(
                LEASE_BUCKET,
                k,
                format!("holds lease {:x}, not {id:x}", lease.id),
            ));
        }
        out.push(lease);
        Ok(())
    })?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// alarms

// etcdserverpb.AlarmMember, the KEY of an `alarm` entry (the value is empty):
//
// | field | name     | type                                   |
// |-------|----------|----------------------------------------|
// | 1     | MemberID | uint64                                 |
// | 2     | Alarm    | enum AlarmType: NONE 0, NOSPACE 1, CORRUPT 2 |
const ALARM_MEMBER_ID: u32 = 1;
const ALARM_TYPE: u32 = 2;

/// An active alarm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Alarm {
    pub member_id: u64,
    /// 1 = NOSPACE, 2 = CORRUPT.
    pub alarm: i32,
}

impl Alarm {
    pub fn decode(buf: &[u8]) -> Result<Alarm, ProtoError> {
        let mut a = Alarm::default();
        for field in Fields::new(buf) {
            let field = field?;
            match field.number {
                ALARM_MEMBER_ID => a.member_id = field.varint()?,
                ALARM_TYPE => a.alarm = field.int32()?,
                _ => {}
            }
        }
        Ok(a)
    }

    pub fn name(&self) -> &'static str {
        match self.alarm {
            0 => "NONE",
            1 => "NOSPACE",
            2 => "CORRUPT",
            _ => "UNKNOWN",
        }
    }
}

/// The `alarm` bucket's keys.
pub fn alarms<S: PageSource>(db: &Db<S>) -> Result<Vec<Alarm>, EtcdError> {
    let mut out = Vec::new();
    for_each_value(db, ALARM_BUCKET, |k, _| {
        out.push(Alarm::decode(k).map_err(proto(ALARM_BUCKET, k))?);
        Ok(())
    })?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// members

/// A cluster member as etcd stores it in `members` (JSON), keyed by its ID in hex.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: u64,
    #[serde(rename = "peerURLs", default)]
    pub peer_urls: Vec<String>,
    #[serde(rename = "isLearner", default)]
    pub is_learner: bool,
    #[serde(default)]
    pub name: String,
    #[serde(rename = "clientURLs", default)]
    pub client_urls: Vec<String>,
}

/// The `members` and `members_removed` buckets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Members {
    pub members: Vec<Member>,
    /// IDs of removed members.
    pub removed: Vec<u64>,
}

fn member_id(bucket: &[u8], key: &[u8]) -> Result<u64, EtcdError> {
    std::str::from_utf8(key)
        .ok()
        .filter(|s| !s.is_empty() && s.len() <= 16)
        .and_then(|s| u64::from_str_radix(s, 16).ok())
        .ok_or_else(|| bad(bucket, key, "not a member ID in hex"))
}

/// Reads `members` and `members_removed`; each member's JSON `id` must match its key.
pub fn members<S: PageSource>(db: &Db<S>) -> Result<Members, EtcdError> {
    let mut out = Members::default();
    for_each_value(db, MEMBERS_BUCKET, |k, v| {
        let id = member_id(MEMBERS_BUCKET, k)?;
        let m: Member = serde_json::from_slice(v)
            .map_err(|e| bad(MEMBERS_BUCKET, k, format!("invalid member JSON: {e}")))?;
        if m.id != id {
            return Err(bad(MEMBERS_BUCKET, k, format!("holds member {:x}", m.id)));
        }
        out.members.push(m);
        Ok(())
    })?;
    for_each_value(db, MEMBERS_REMOVED_BUCKET, |k, _| {
        out.removed.push(member_id(MEMBERS_REMOVED_BUCKET, k)?);
        Ok(())
    })?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// cluster

/// The `cluster` bucket (3.5+).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClusterInfo {
    /// The cluster version, e.g. "3.5.0".
    pub cluster_version: Option<String>,
    /// The downgrade state, as stored (JSON).
    pub downgrade: Option<String>,
}

pub fn cluster<S: PageSource>(db: &Db<S>) -> Result<ClusterInfo, EtcdError> {
    let mut out = ClusterInfo::default();
    for_each_value(db, CLUSTER_BUCKET, |k, v| {
        let text = || Some(String::from_utf8_lossy(v).into_owned());
        match k {
            CLUSTER_VERSION_KEY => out.cluster_version = text(),
            DOWNGRADE_KEY => out.downgrade = text(),
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// auth

// authpb.User, the value of an `authUsers` entry (key: the name):
//
// | field | name     | type                                   |
// |-------|----------|----------------------------------------|
// | 1     | name     | bytes                                  |
// | 2     | password | bytes (bcrypt hash; never exposed)     |
// | 3     | roles    | repeated string                        |
// | 4     | options  | UserAddOptions { 1: no_password bool } |
//
// authpb.Role, the value of an `authRoles` entry (key: the name):
//
// | field | name          | type                                                       |
// |-------|---------------|------------------------------------------------------------|
// | 1     | name          | bytes                                                      |
// | 2     | keyPermission | repeated Permission { 1: permType enum, 2: key, 3: range_end } |
const USER_NAME: u32 = 1;
const USER_PASSWORD: u32 = 2;
const USER_ROLES: u32 = 3;
const USER_OPTIONS: u32 = 4;
const USER_OPTIONS_NO_PASSWORD: u32 = 1;
const ROLE_NAME: u32 = 1;
const ROLE_PERMISSION: u32 = 2;
const PERMISSION_TYPE: u32 = 1;
const PERMISSION_KEY: u32 = 2;
const PERMISSION_RANGE_END: u32 = 3;

/// An auth user, without its password hash.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct User {
    pub name: String,
    pub roles: Vec<String>,
    pub has_password: bool,
    pub no_password: bool,
}

impl User {
    pub fn decode(buf: &[u8]) -> Result<User, ProtoError> {
        let mut u = User::default();
        for field in Fields::new(buf) {
            let field = field?;
            match field.number {
                USER_NAME => u.name = String::from_utf8_lossy(field.bytes()?).into_owned(),
                USER_PASSWORD => u.has_password = !field.bytes()?.is_empty(),
                USER_ROLES => u
                    .roles
                    .push(String::from_utf8_lossy(field.bytes()?).into_owned()),
                USER_OPTIONS => {
                    for o in Fields::new(field.bytes()?) {
                        let o = o?;
                        if o.number == USER_OPTIONS_NO_PASSWORD {
                            u.no_password = o.bool()?;
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(u)
    }
}

/// A permission of a role: READ 0, WRITE 1, READWRITE 2 over `key` (to `range_end`, if set).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Permission {
    pub perm_type: i32,
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
}

/// An auth role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Role {
    pub name: String,
    pub permissions: Vec<Permission>,
}

impl Role {
    pub fn decode(buf: &[u8]) -> Result<Role, ProtoError> {
        let mut r = Role::default();
        for field in Fields::new(buf) {
            let field = field?;
            match field.number {
                ROLE_NAME => r.name = String::from_utf8_lossy(field.bytes()?).into_owned(),
                ROLE_PERMISSION => {
                    let mut p = Permission::default();
                    for f in Fields::new(field.bytes()?) {
                        let f = f?;
                        match f.number {
                            PERMISSION_TYPE => p.perm_type = f.int32()?,
                            PERMISSION_KEY => p.key = f.bytes()?.to_vec(),
                            PERMISSION_RANGE_END => p.range_end = f.bytes()?.to_vec(),
                            _ => {}
                        }
                    }
                    r.permissions.push(p);
                }
                _ => {}
            }
        }
        Ok(r)
    }
}

/// The `auth`, `authUsers` and `authRoles` buckets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuthInfo {
    pub enabled: bool,
    pub revision: Option<u64>,
    pub users: Vec<User>,
    pub roles: Vec<Role>,
}

pub fn auth<S: PageSource>(db: &Db<S>) -> Result<AuthInfo, EtcdError> {
    let mut out = AuthInfo::default();
    for_each_value(db, AUTH_BUCKET, |k, v| {
        match k {
            AUTH_ENABLED_KEY => out.enabled = v == [1],
            AUTH_REVISION_KEY => {
                out.revision = Some(
                    decode_be_u64(v).ok_or_else(|| bad(AUTH_BUCKET, k, "not an 8-byte integer"))?,
                )
            }
            _ => {}
        }
        Ok(())
    })?;
    for_each_value(db, AUTH_USERS_BUCKET, |k, v| {
        out.users
            .push(User::decode(v).map_err(proto(AUTH_USERS_BUCKET, k))?);
        Ok(())
    })?;
    for_each_value(db, AUTH_ROLES_BUCKET, |k, v| {
        out.roles
            .push(Role::decode(v).map_err(proto(AUTH_ROLES_BUCKET, k))?);
        Ok(())
    })?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// etcdutl snapshot status

/// What `etcdutl snapshot status -w json` prints, field for field (same JSON names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EtcdStatus {
    /// CRC-32C over, for each top-level bucket in key order, its name, then each key and value
    /// of its entries (a nested bucket's entry contributes its key only).
    pub hash: u32,
    /// Main revision of the last key of the `key` bucket (0 when it is empty).
    pub revision: i64,
    /// Entries in all top-level buckets (nested buckets' entries count once, their content not).
    pub total_key: u64,
    /// high-water mark × page size.
    pub total_size: u64,
    /// etcd 3.6+: the `meta` bucket's storageVersion, normalised as semver; `None` when absent or
    /// unparsable (etcdutl 3.6 prints ""; etcdutl 3.5 has no such field).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Entries per top-level bucket, in name order (not in etcdutl's output).
    #[serde(skip)]
    pub bucket_keys: Vec<(String, u64)>,
}

/// Computes what `etcdutl snapshot status` computes, the same way:
/// 1. bbolt's integrity check first: any problem fails (an invalid meta page excepted: bbolt opens
///    the file with the other one, as here);
/// 2. `totalSize` = high-water mark × page size;
/// 3. `version` = `meta`/`storageVersion` parsed as semver (etcdutl 3.6);
/// 4. for each entry of the root bucket, in key order: it must be a bucket; hash its name; then for
///    each entry of that bucket (bbolt's `ForEach`: one level, nested buckets not entered) hash the
///    key and the value (none for a nested bucket) and count it; in `key`, the revision is the main
///    part of the entry's key (the first 8 bytes, big-endian, as int64), so the last one wins.
pub fn status<S: PageSource>(db: &Db<S>) -> Result<EtcdStatus, EtcdError> {
    // One walk checks the structure and hashes every pair in key order: each page is read once.
    let mut hash = StatusHash::default();
    let report = check_visiting(db, &mut hash);
    let problems: Vec<Problem> = report
        .problems
        .into_iter()
        .filter(|p| p.kind != ProblemKind::Meta)
        .collect();
    let meta_problems = u64::from(db.meta_note().is_some());
    let count = report.problem_count.saturating_sub(meta_problems);
    if count > 0 {
        if let Some(first) = problems.first().cloned() {
            return Err(EtcdError::CheckFailed {
                count,
                first: Box::new(first),
                problems,
            });
        }
    }
    if let Some(error) = hash.error {
        return Err(error);
    }
    let version = db
        .bucket(META_BUCKET)?
        .map(|m| m.get(STORAGE_VERSION_KEY))
        .transpose()?
        .flatten()
        .and_then(|v| semver(&v));
    let StatusHash {
        crc,
        revision,
        total_key,
        bucket_keys,
        ..
    } = hash;
    Ok(EtcdStatus {
        hash: crc.sum(),
        revision,
        total_key,
        total_size: db.data_size(),
        version,
        bucket_keys,
    })
}

/// etcdutl's status numbers, fed by the check's walk: CRC-32C over each top-level bucket's name
/// and then every key and value in it (a nested bucket contributes its key only), the last
/// revision of `key`, and the count of pairs in top-level buckets.
#[derive(Default)]
struct StatusHash {
    crc: Crc32c,
    in_key_bucket: bool,
    revision: i64,
    total_key: u64,
    bucket_keys: Vec<(String, u64)>,
    error: Option<EtcdError>,
}

impl Visitor for StatusHash {
    fn visit(&mut self, e: Visit<'_>) {
        match e.depth {
            0 => {
                if !e.is_bucket && self.error.is_none() {
                    self.error = Some(EtcdError::NotABucket {
                        name: String::from_utf8_lossy(e.key).into_owned(),
                    });
                }
                self.crc.update(e.key);
                self.in_key_bucket = e.key == KEY_BUCKET;
                self.bucket_keys
                    .push((String::from_utf8_lossy(e.key).into_owned(), 0));
            }
            1 => {
                self.crc.update(e.key);
                if !e.is_bucket {
                    self.crc.update(e.value);
                }
                if self.in_key_bucket {
                    match status_revision(e.key) {
                        Ok(r) => self.revision = r,
                        Err(err) => {
                            if self.error.is_none() {
                                self.error = Some(err);
                            }
                        }
                    }
                }
                self.total_key += 1;
                if let Some((_, n)) = self.bucket_keys.last_mut() {
                    *n += 1;
                }
            }
            _ => {}
        }
    }
}

/// etcdutl's reading of a `key` bucket key: main = the first 8 bytes (big-endian, as int64), sub
/// = bytes 9..17. etcdutl does not check the separator and crashes on a key shorter than 17
/// bytes; here that is an error.
fn status_revision(key: &[u8]) -> Result<i64, EtcdError> {
    match key.get(..8).zip(key.get(9..17)) {
        Some((main, _)) => Ok(decode_be_u64(main).map_or(0, |m| m as i64)),
        None => Err(bad(KEY_BUCKET, key, "shorter than a revision key")),
    }
}

/// A version as Go's coreos/go-semver parses and prints it: `MAJOR.MINOR.PATCH[-PRE][+META]`,
/// each number a decimal int64, PRE and META dot-separated alphanumeric identifiers. `None` if it
/// does not parse (etcdutl then prints "").
pub fn semver(raw: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(raw).ok()?;
    let (rest, metadata) = match s.split_once('+') {
        Some((r, m)) => (r, m),
        None => (s, ""),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((c, p)) => (c, p),
        None => (rest, ""),
    };
    let identifier_ok = |id: &str| {
        id.is_empty()
            || id.split('.').all(|part| {
                !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
    };
    if !identifier_ok(pre) || !identifier_ok(metadata) {
        return None;
    }
    let mut parts = core.splitn(3, '.');
    let mut number = || -> Option<i64> {
        let p = parts.next()?;
        // Go's ParseInt accepts a sign; '-' and '+' were split off above, so only digits remain.
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        p.parse().ok()
    };
    let (major, minor, patch) = (number()?, number()?, number()?);
    let mut out = format!("{major}.{minor}.{patch}");
    if !pre.is_empty() {
        out.push('-');
        out.push_str(pre);
    }
    if !metadata.is_empty() {
        out.push('+');
        out.push_str(metadata);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bolt::proto::encode;

    #[test]
    fn key_value_round_trip() {
        let mut m = Vec::new();
        encode::bytes(&mut m, 1, b"/registry/pods/a");
        encode::int(&mut m, 2, 7);
        encode::int(&mut m, 3, 9);
        encode::int(&mut m, 4, 2);
        encode::bytes(&mut m, 5, b"v");
        encode::int(&mut m, 6, 0x1234_5678_9abc);
        encode::bytes(&mut m, 99, b"unknown field");
        let kv = KeyValue::decode(&m).unwrap();
        assert_eq!(
            kv,
            KeyValue {
                key: b"/registry/pods/a",
                create_revision: 7,
                mod_revision: 9,
                version: 2,
                value: b"v",
                lease: 0x1234_5678_9abc,
            }
        );
        // A tombstone: the key only.
        let mut t = Vec::new();
        encode::bytes(&mut t, 1, b"k");
        assert_eq!(KeyValue::decode(&t).unwrap().mod_revision, 0);
        // Wrong wire type for a known field.
        let mut w = Vec::new();
        encode::int(&mut w, 1, 5);
        assert!(KeyValue::decode(&w).is_err());
    }

    #[test]
    fn lease_alarm_user_role() {
        let mut l = Vec::new();
        encode::int(&mut l, 1, 0x694d_8a2b_3c4d_5e6f);
        encode::int(&mut l, 2, 3600);
        assert_eq!(
            Lease::decode(&l).unwrap(),
            Lease {
                id: 0x694d_8a2b_3c4d_5e6f,
                ttl: 3600,
                remaining_ttl: 0
            }
        );
        let mut a = Vec::new();
        encode::int(&mut a, 1, 0x8e9e_05c5_2164_694d_u64 as i64);
        encode::int(&mut a, 2, 1);
        let a = Alarm::decode(&a).unwrap();
        assert_eq!((a.member_id, a.name()), (0x8e9e_05c5_2164_694d, "NOSPACE"));
        let mut u = Vec::new();
        encode::bytes(&mut u, 1, b"alice");
        encode::bytes(&mut u, 2, b"$2a$10$hash");
        encode::bytes(&mut u, 3, b"reader");
        encode::bytes(&mut u, 3, b"writer");
        let u = User::decode(&u).unwrap();
        assert_eq!(u.roles, ["reader", "writer"]);
        assert!(u.has_password && !u.no_password);
        let mut p = Vec::new();
        encode::int(&mut p, 1, 2);
        encode::bytes(&mut p, 2, b"/a");
        encode::bytes(&mut p, 3, b"/b");
        let mut r = Vec::new();
        encode::bytes(&mut r, 1, b"reader");
        encode::bytes(&mut r, 2, &p);
        let r = Role::decode(&r).unwrap();
        assert_eq!(r.permissions[0].perm_type, 2);
        assert_eq!(r.permissions[0].range_end, b"/b");
    }

    #[test]
    fn semver_as_go_semver() {
        assert_eq!(semver(b"3.6.0").as_deref(), Some("3.6.0"));
        assert_eq!(semver(b"03.6.00").as_deref(), Some("3.6.0"));
        assert_eq!(semver(b"3.6.0-rc.1+b.2").as_deref(), Some("3.6.0-rc.1+b.2"));
        // An empty pre-release after '-' is no pre-release, as in go-semver.
        assert_eq!(semver(b"3.6.0-").as_deref(), Some("3.6.0"));
        for bad in [
            &b""[..],
            b"3.6",
            b"3.6.0.1",
            b"3.6.x",
            b"3.6.0-a..b",
            b"v3.6.0",
            b"\xff",
        ] {
            assert_eq!(semver(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn status_revision_is_etcdutls() {
        let mut k = 5u64.to_be_bytes().to_vec();
        k.push(b'x'); // etcdutl does not check the separator
        k.extend_from_slice(&0u64.to_be_bytes());
        assert_eq!(status_revision(&k).unwrap(), 5);
        k.push(b't');
        assert_eq!(status_revision(&k).unwrap(), 5);
        assert!(status_revision(&k[..16]).is_err());
        let wrapped = [0xFFu8; 17];
        assert_eq!(status_revision(&wrapped).unwrap(), -1);
    }
}
