//! The membership of a restored cluster: the `--initial-cluster` string parsed and validated, member
//! and cluster IDs derived from it and the cluster token, each member's JSON as etcd stores it, and
//! the updates a restore makes to the bbolt backend (`members`, `members_removed`, `meta`).
//!
//! As etcd does, a member's peer URLs are sorted by their URL string, and the members are ordered
//! by ID, ascending: that is the order of the ConfChange entries in the WAL, of the voters in the
//! raft snapshot, and of the creations in the v2 store.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::error::RestoreError;
use super::ids;

/// The term of every entry, hard state and snapshot a restore writes.
pub const RESTORE_TERM: u64 = 1;

/// bbolt bucket holding one JSON value per member, keyed by the member ID in [`ids::id_hex`] form.
pub const BUCKET_MEMBERS: &[u8] = b"members";
/// bbolt bucket of removed member IDs; a restore empties it.
pub const BUCKET_MEMBERS_REMOVED: &[u8] = b"members_removed";
/// bbolt bucket of etcd's bookkeeping keys.
pub const BUCKET_META: &[u8] = b"meta";
/// `meta` key of the index of the last applied raft entry (8 bytes, big-endian).
pub const KEY_CONSISTENT_INDEX: &[u8] = b"consistent_index";
/// `meta` key of the term of that entry (8 bytes, big-endian).
pub const KEY_TERM: &[u8] = b"term";

/// A parsed `--initial-cluster`: member names in order of first appearance, each with its peer URLs
/// (canonical form, sorted, at least one). A name given several times collects all its URLs, as in
/// etcd (`m1=https://a:2380,m1=https://b:2380`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitialCluster {
    members: Vec<(String, Vec<String>)>,
}

impl InitialCluster {
    /// Parses `name=url[,name=url...]`. Empty items (a trailing comma) are skipped and whitespace
    /// around an item is ignored. Every URL must be `http` or `https` with a host and a port and
    /// nothing after them (no path, query or fragment), and no URL may appear twice.
    pub fn parse(s: &str) -> Result<Self, RestoreError> {
        let mut members: Vec<(String, Vec<String>)> = Vec::new();
        let mut owner: HashMap<String, String> = HashMap::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let bad = |reason: &str| RestoreError::InitialClusterItem {
                item: item.to_owned(),
                reason: reason.to_owned(),
            };
            let Some((name, url)) = item.split_once('=') else {
                return Err(bad("expected name=peerURL"));
            };
            if name.is_empty() {
                return Err(bad("the member name is empty"));
            }
            if name.chars().any(char::is_control) {
                return Err(bad("the member name contains a control character"));
            }
            let url = canonical_peer_url(url).map_err(|reason| RestoreError::PeerUrl {
                name: name.to_owned(),
                url: url.to_owned(),
                reason: reason.to_owned(),
            })?;
            if let Some(first) = owner.get(&url) {
                return Err(RestoreError::DuplicatePeerUrl {
                    url,
                    first: first.clone(),
                    second: name.to_owned(),
                });
            }
            owner.insert(url.clone(), name.to_owned());
            match members.iter_mut().find(|(n, _)| n == name) {
                Some((_, urls)) => urls.push(url),
                None => members.push((name.to_owned(), vec![url])),
            }
        }
        if members.is_empty() {
            return Err(RestoreError::EmptyInitialCluster);
        }
        for (_, urls) in &mut members {
            urls.sort();
        }
        Ok(InitialCluster { members })
    }

    /// The members (name, sorted peer URLs) in order of first appearance.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.members.iter().map(|(n, u)| (n.as_str(), u.as_slice()))
    }

    /// The peer URLs of member `name`.
    pub fn peer_urls(&self, name: &str) -> Option<&[String]> {
        self.iter().find(|(n, _)| *n == name).map(|(_, u)| u)
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Always false: parsing refuses an empty cluster.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

/// The canonical form of a peer URL as Go's `url.URL.String()` gives it (scheme lowercased, the rest
/// as written), or why it is refused.
fn canonical_peer_url(url: &str) -> Result<String, &'static str> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("expected scheme://host:port");
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err("the scheme must be http or https");
    }
    if rest.contains('@') {
        return Err("user information is not allowed");
    }
    if rest.contains('/') {
        return Err("a path is not allowed (not even \"/\")");
    }
    if rest.contains('?') || rest.contains('#') {
        return Err("a query or fragment is not allowed");
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return Err("unclosed [ in the IPv6 host");
        };
        if addr.is_empty()
            || !addr
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err("bad IPv6 address");
        }
        let Some(port) = after.strip_prefix(':') else {
            return Err("expected host:port (the port is required)");
        };
        (addr, port)
    } else {
        let Some((host, port)) = rest.rsplit_once(':') else {
            return Err("expected host:port (the port is required)");
        };
        if host.contains(':') {
            return Err("an IPv6 host must be written in brackets: [addr]:port");
        }
        (host, port)
    };
    if host.is_empty() {
        return Err("the host is empty");
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
    {
        return Err("the host contains a character not allowed in a host name");
    }
    if port.is_empty() || port.len() > 5 || !port.chars().all(|c| c.is_ascii_digit()) {
        return Err("the port must be a number");
    }
    if port.parse::<u32>().map_or(true, |p| p > 65535) {
        return Err("the port must be at most 65535");
    }
    Ok(format!("{scheme}://{rest}"))
}

/// One member of the restored cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    id: u64,
    name: String,
    peer_urls: Vec<String>,
    is_learner: bool,
}

impl Member {
    /// The member ID.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The member name (`--name`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The peer URLs, canonical and sorted.
    pub fn peer_urls(&self) -> &[String] {
        &self.peer_urls
    }

    /// Always false for a restored member (etcd restores voters only).
    pub fn is_learner(&self) -> bool {
        self.is_learner
    }

    /// The ID as etcd writes it in keys and paths (lowercase hex, no padding).
    pub fn id_hex(&self) -> String {
        ids::id_hex(self.id)
    }

    /// The member as Go's `json.Marshal` writes etcd's `Member`: the value in the bbolt `members`
    /// bucket and the context of the member's ConfChange, e.g.
    /// `{"id":10276657743932975437,"peerURLs":["http://localhost:2380"],"name":"default"}`
    /// (`isLearner` only when true, `name` only when non-empty, `clientURLs` never: it is empty).
    pub fn json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.name.len());
        out.extend_from_slice(b"{\"id\":");
        out.extend_from_slice(self.id.to_string().as_bytes());
        out.push(b',');
        self.push_raft_attributes(&mut out);
        if !self.name.is_empty() {
            out.extend_from_slice(b",\"name\":");
            push_go_json_string(&mut out, &self.name);
        }
        out.push(b'}');
        out
    }

    /// etcd's `RaftAttributes` as JSON, the value of `/0/members/<id>/raftAttributes` in the v2
    /// store: `{"peerURLs":["https://10.0.0.11:2380"]}`.
    pub fn raft_attributes_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(48);
        out.push(b'{');
        self.push_raft_attributes(&mut out);
        out.push(b'}');
        out
    }

    fn push_raft_attributes(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"\"peerURLs\":[");
        for (i, u) in self.peer_urls.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_go_json_string(out, u);
        }
        out.push(b']');
        if self.is_learner {
            out.extend_from_slice(b",\"isLearner\":true");
        }
    }
}

/// The members of the restored cluster, ordered by ID ascending, and the cluster ID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    cluster_id: u64,
    members: Vec<Member>,
}

impl Membership {
    /// Derives the member IDs from each member's peer URLs and `token` (`--initial-cluster-token`)
    /// and the cluster ID from the member IDs. Refuses a member ID of 0 and two members with one ID.
    pub fn new(initial_cluster: &InitialCluster, token: &str) -> Result<Membership, RestoreError> {
        let mut members: Vec<Member> = initial_cluster
            .iter()
            .map(|(name, urls)| Member {
                id: ids::member_id(urls, token),
                name: name.to_owned(),
                peer_urls: urls.to_vec(),
                is_learner: false,
            })
            .collect();
        members.sort_by_key(|m| m.id);
        for m in &members {
            if m.id == 0 {
                return Err(RestoreError::ZeroMemberId {
                    name: m.name.clone(),
                });
            }
        }
        for pair in members.windows(2) {
            if let [a, b] = pair {
                if a.id == b.id {
                    return Err(RestoreError::DuplicateMemberId {
                        id: a.id,
                        first: a.name.clone(),
                        second: b.name.clone(),
                    });
                }
            }
        }
        let ids: Vec<u64> = members.iter().map(|m| m.id).collect();
        Ok(Membership {
            cluster_id: ids::cluster_id(&ids),
            members,
        })
    }

    /// The cluster ID.
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    /// The members, by ID ascending (never empty).
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The member called `name`.
    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }

    /// The member with ID `id`.
    pub fn member_by_id(&self, id: u64) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    /// The member IDs, ascending: the voters of the restored configuration.
    pub fn voters(&self) -> Vec<u64> {
        self.members.iter().map(|m| m.id).collect()
    }

    /// The raft index a restore commits: one ConfChange entry per member.
    pub fn commit_index(&self) -> u64 {
        self.members.len() as u64
    }

    /// The member `id`, or an error listing the known members.
    pub(crate) fn require(&self, id: u64) -> Result<&Member, RestoreError> {
        self.member_by_id(id)
            .ok_or_else(|| RestoreError::UnknownMember {
                id,
                known: self.describe(),
            })
    }

    fn describe(&self) -> String {
        let mut s = String::new();
        for (i, m) in self.members.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            let _ = write!(s, "{}={:x}", m.name, m.id);
        }
        s
    }

    /// What a restore changes in the bbolt backend, as `etcdutl snapshot restore` 3.5 does: empty
    /// `members` and `members_removed`, put each member's [`Member::json`] under its hex ID, and set
    /// `meta` `consistent_index` = [`commit_index`](Self::commit_index) and `term` =
    /// [`RESTORE_TERM`] (8 bytes big-endian each). etcdutl leaves every other key alone, including
    /// `meta` `confState`, which keeps the source cluster's voters.
    pub fn db_updates(&self) -> DbUpdates {
        let mut puts: Vec<DbPut> = self
            .members
            .iter()
            .map(|m| DbPut {
                bucket: BUCKET_MEMBERS,
                key: m.id_hex().into_bytes(),
                value: m.json(),
            })
            .collect();
        puts.push(DbPut {
            bucket: BUCKET_META,
            key: KEY_CONSISTENT_INDEX.to_vec(),
            value: self.commit_index().to_be_bytes().to_vec(),
        });
        puts.push(DbPut {
            bucket: BUCKET_META,
            key: KEY_TERM.to_vec(),
            value: RESTORE_TERM.to_be_bytes().to_vec(),
        });
        DbUpdates {
            cleared_buckets: vec![BUCKET_MEMBERS, BUCKET_MEMBERS_REMOVED],
            puts,
        }
    }
}

/// Changes to apply to the restored bbolt db: first empty (creating if absent) every bucket of
/// `cleared_buckets`, then apply `puts` in order (creating a missing bucket).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbUpdates {
    pub cleared_buckets: Vec<&'static [u8]>,
    pub puts: Vec<DbPut>,
}

/// One key/value put into a top-level bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbPut {
    pub bucket: &'static [u8],
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// Appends `s` as a JSON string the way Go's `encoding/json` (1.22 and later) writes it: `"` and `\`
/// escaped, `\b \f \n \r \t` short forms, other control characters and `<`, `>`, `&` as `\u00XX`
/// (lowercase hex), U+2028 and U+2029 as `\u2028`/`\u2029`, everything else literal UTF-8.
pub(crate) fn push_go_json_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '<' | '>' | '&' | '\u{0}'..='\u{1f}' | '\u{2028}' | '\u{2029}' => {
                out.extend_from_slice(format!("\\u{:04x}", u32::from(c)).as_bytes());
            }
            _ => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    const THREE: &str =
        "m1=https://10.0.0.11:2380,m2=https://10.0.0.12:2380,m3=https://10.0.0.13:2380";

    fn err(s: &str) -> String {
        InitialCluster::parse(s).unwrap_err().to_string()
    }

    #[test]
    fn parse_groups_urls_per_name_and_sorts_them() {
        let ic =
            InitialCluster::parse(" m1=https://b:2380, m2=http://c:1,m1=HTTPS://a:2380,").unwrap();
        assert_eq!(ic.len(), 2);
        assert_eq!(
            ic.peer_urls("m1").unwrap(),
            ["https://a:2380", "https://b:2380"]
        );
        assert_eq!(ic.peer_urls("m2").unwrap(), ["http://c:1"]);
        let names: Vec<&str> = ic.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["m1", "m2"]);
        let v6 = InitialCluster::parse("a=https://[fd00::1]:2380").unwrap();
        assert_eq!(v6.peer_urls("a").unwrap(), ["https://[fd00::1]:2380"]);
    }

    #[test]
    fn parse_errors_name_the_bad_item() {
        assert!(err("").contains("empty"));
        assert!(err(" , ").contains("empty"));
        assert!(err("m1https://a:2380").contains("\"m1https://a:2380\": expected name=peerURL"));
        assert!(err("=https://a:2380").contains("member name is empty"));
        assert!(err("m1=ftp://a:2380").contains("http or https"));
        assert!(err("m1=https://a").contains("port is required"));
        assert!(err("m1=https://a:").contains("port must be a number"));
        assert!(err("m1=https://a:99999").contains("at most 65535"));
        assert!(err("m1=https://a:2380/").contains("path"));
        assert!(err("m1=https://a:2380?x=1").contains("query"));
        assert!(err("m1=https://u@a:2380").contains("user"));
        assert!(err("m1=https://:2380").contains("host is empty"));
        assert!(err("m1=https://fd00::1:2380").contains("brackets"));
        assert!(err("m1=a:2380").contains("scheme://host:port"));
        let e = err("m1=https://a:2380,m2=https://a:2380");
        assert!(
            e.contains("\"https://a:2380\"") && e.contains("\"m1\"") && e.contains("\"m2\""),
            "{e}"
        );
        assert!(err("m1=https://a:2380,m1=HTTPS://a:2380").contains("given twice"));
        let e = err("m1=https://a:2380,m2=https://b:2380/x");
        assert!(
            e.starts_with("member \"m2\": bad peer URL \"https://b:2380/x\""),
            "{e}"
        );
    }

    #[test]
    fn fixture_members_and_cluster_id() {
        let ic = InitialCluster::parse(THREE).unwrap();
        let m = Membership::new(&ic, "etcd-cluster").unwrap();
        let got: Vec<(&str, String)> = m.members().iter().map(|x| (x.name(), x.id_hex())).collect();
        assert_eq!(
            got,
            [
                ("m3", "55fcbe0adaa45350".to_owned()),
                ("m1", "cebdf10928a06f3c".to_owned()),
                ("m2", "f7a9c20602b8532e".to_owned())
            ]
        );
        // from the metadata records of the fixtures' WALs
        assert_eq!(m.cluster_id(), 0x1889_f2ee_bf07_c41a);
        assert_eq!(m.commit_index(), 3);
        assert_eq!(m.member("m2").unwrap().id(), 17846008329503527726);
        assert!(m.member("m4").is_none());
        assert_eq!(
            m.member("m1").unwrap().json(),
            br#"{"id":14897328164050071356,"peerURLs":["https://10.0.0.11:2380"],"name":"m1"}"#
        );
        assert_eq!(
            m.member("m3").unwrap().raft_attributes_json(),
            br#"{"peerURLs":["https://10.0.0.13:2380"]}"#
        );
        let d = Membership::new(
            &InitialCluster::parse("default=http://localhost:2380").unwrap(),
            "etcd-cluster",
        )
        .unwrap();
        assert_eq!(d.members()[0].id(), 0x8e9e_05c5_2164_694d);
        assert_eq!(d.cluster_id(), 0xcdf8_1819_4e3a_8c32);
        assert_eq!(
            d.members()[0].json(),
            br#"{"id":10276657743932975437,"peerURLs":["http://localhost:2380"],"name":"default"}"#
        );
    }

    #[test]
    fn json_escapes_as_go_does() {
        let mut out = Vec::new();
        push_go_json_string(&mut out, "a\"\\<>&\n\u{1}\u{8}\u{c}é\u{2028}");
        assert_eq!(
            out,
            r#""a\"\\\u003c\u003e\u0026\n\u0001\b\fé\u2028""#.as_bytes()
        );
    }

    fn fixture_db(dir: &str) -> crate::bolt::Db<std::fs::File> {
        let p = format!(
            "{}/fixtures/etcdutl-3.5.30-restore/{dir}/member/snap/db",
            env!("CARGO_MANIFEST_DIR")
        );
        crate::bolt::Db::open(std::fs::File::open(p).unwrap()).unwrap()
    }

    fn bucket_entries(db: &crate::bolt::Db<std::fs::File>, name: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let b = db.bucket(name).unwrap().unwrap();
        b.iter()
            .map(|e| e.unwrap())
            .map(|e| (e.key, e.value))
            .collect()
    }

    #[test]
    fn db_updates_match_etcdutl_db() {
        for (dir, cluster) in [
            ("restored-m1", THREE),
            ("restored-m2", THREE),
            ("restored-m3", THREE),
            ("restored-default-bumped", "default=http://localhost:2380"),
        ] {
            let m =
                Membership::new(&InitialCluster::parse(cluster).unwrap(), "etcd-cluster").unwrap();
            let up = m.db_updates();
            let db = fixture_db(dir);
            assert_eq!(up.cleared_buckets, [BUCKET_MEMBERS, BUCKET_MEMBERS_REMOVED]);
            assert!(bucket_entries(&db, BUCKET_MEMBERS_REMOVED).is_empty());
            let want: Vec<(Vec<u8>, Vec<u8>)> = up
                .puts
                .iter()
                .filter(|p| p.bucket == BUCKET_MEMBERS)
                .map(|p| (p.key.clone(), p.value.clone()))
                .collect();
            assert_eq!(bucket_entries(&db, BUCKET_MEMBERS), want, "{dir}");
            for p in up.puts.iter().filter(|p| p.bucket == BUCKET_META) {
                assert_eq!(
                    db.get(BUCKET_META, &p.key).unwrap().as_ref(),
                    Some(&p.value),
                    "{dir}"
                );
            }
            assert_eq!(up.puts.len(), m.members().len() + 2);
        }
    }
}
