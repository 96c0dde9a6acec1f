//! The haproxy-keepalived load balancer that `cpkeep bootstrap` plans, against the real haproxy,
//! keepalived and curl: every generated file passes the tools' own configuration checks (and a
//! broken copy does not, so the checks are known to bite); the generated haproxy.cfg, run on
//! loopback in front of three fake apiservers, stops sending traffic to one whose /readyz fails
//! within the time its check settings promise, without failing a single client request; and the
//! generated keepalived check script tells a ready endpoint from one with no ready apiserver.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cpkeep::bootstrap::inventory;
use cpkeep::bootstrap::lb::{haproxy, keepalived};
use cpkeep::bootstrap::spec::{ClusterSpec, APISERVER_BIND_PORT};
use cpkeep::bootstrap::validate::{validate, ValidateOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness;

/// haproxy and keepalived on the three control-plane nodes.
const ON_CONTROL_PLANE: &str = harness::GUIDE_INVENTORY;

/// haproxy and keepalived on two dedicated hosts, which may then take the apiserver's port.
const DEDICATED: &str = "\
apiVersion: cpkeep/v1alpha1
kind: Cluster
name: prod
kubernetesVersion: v1.31.4
controlPlaneEndpoint: 192.168.1.20:6443
loadBalancer:
  mode: haproxy-keepalived
  vip: 192.168.1.20
  interface: eth0
  nodes: [{name: lb1, address: 192.168.1.30}, {name: lb2, address: 192.168.1.31}]
networking: {podSubnet: 10.244.0.0/16, serviceSubnet: 10.96.0.0/12, dnsDomain: cluster.local}
controlPlane:
  - {name: cp1, address: 192.168.1.10}
  - {name: cp2, address: 192.168.1.11}
  - {name: cp3, address: 192.168.1.12}
";

const INVENTORIES: [(&str, &str); 2] = [
    ("on-control-plane", ON_CONTROL_PLANE),
    ("dedicated", DEDICATED),
];

fn spec(text: &str) -> ClusterSpec {
    let inv = inventory::parse(text).unwrap_or_else(|e| panic!("inventory does not parse: {e}"));
    let opts = ValidateOptions {
        allow_even: false,
        base_dir: PathBuf::new(),
    };
    validate(&inv, &opts).unwrap_or_else(|r| panic!("inventory is refused: {r:?}"))
}

/// `text` with `from` replaced by `to`, failing when `from` is not in it.
fn edit(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} not in:\n{text}");
    text.replace(from, to)
}

// ---------------------------------------------------------------------------------------------
// haproxy -c
// ---------------------------------------------------------------------------------------------

/// `haproxy -c -dW -f FILE`: whether the configuration is valid and free of warnings (-dW makes any
/// warning fatal), with what haproxy said.
fn haproxy_check(dir: &Path, name: &str, cfg: &str) -> (bool, String) {
    let file = dir.join(name);
    std::fs::write(&file, cfg).unwrap();
    let out = std::process::Command::new(harness::tool("haproxy"))
        .args(["-c", "-dW", "-f"])
        .arg(&file)
        .output()
        .expect("run haproxy -c");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn haproxy_checks_every_generated_config() {
    let dir = tempfile::tempdir().unwrap();
    for (label, text) in INVENTORIES {
        let spec = spec(text);
        let cfg = haproxy::render(&spec);
        let (ok, said) = haproxy_check(dir.path(), &format!("{label}.cfg"), &cfg);
        assert!(ok, "haproxy -c refuses the {label} config:\n{said}\n{cfg}");
        assert!(
            !said.contains("[WARNING]") && !said.contains("[ALERT]"),
            "haproxy -c warns about the {label} config:\n{said}"
        );
        // What was checked is the endpoint's port in front of every apiserver.
        assert!(
            cfg.contains(&format!("\n    bind *:{}\n", spec.load_balancer.port)),
            "{cfg}"
        );
        for n in &spec.control_plane {
            assert!(
                cfg.contains(&format!(
                    "\n    server {} {}:{APISERVER_BIND_PORT}\n",
                    n.name, n.address
                )),
                "{} missing from the {label} config:\n{cfg}",
                n.name
            );
        }
    }

    // The check bites: an unknown keyword is an error, and so (with -dW) is a mere warning.
    let cfg = haproxy::render(&spec(ON_CONTROL_PLANE));
    let unknown = edit(
        &cfg,
        "    balance roundrobin\n",
        "    balance roundrobin\n    frobnicate on\n",
    );
    let (ok, said) = haproxy_check(dir.path(), "unknown-keyword.cfg", &unknown);
    assert!(!ok, "haproxy -c accepts an unknown keyword:\n{said}");
    assert!(said.contains("unknown keyword 'frobnicate'"), "{said}");
    let untimed = edit(&cfg, "    timeout client 1h\n", "");
    let (ok, said) = haproxy_check(dir.path(), "missing-timeout.cfg", &untimed);
    assert!(
        !ok,
        "haproxy -c -dW accepts a config with a warning:\n{said}"
    );
    assert!(
        said.contains("missing timeouts for frontend 'apiserver'"),
        "{said}"
    );
}

// ---------------------------------------------------------------------------------------------
// keepalived -t
// ---------------------------------------------------------------------------------------------

/// `keepalived -t -f FILE`: its exit code and what it printed (on stderr).
fn keepalived_check(dir: &Path, name: &str, conf: &str) -> (i32, String) {
    let file = dir.join(name);
    std::fs::write(&file, conf).unwrap();
    let out = std::process::Command::new(harness::tool("keepalived"))
        .args(["-t", "-f"])
        .arg(&file)
        .output()
        .expect("run keepalived -t");
    let code = out
        .status
        .code()
        .unwrap_or_else(|| panic!("keepalived -t {name} was killed: {:?}", out.status));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (code, text)
}

/// keepalived -t's messages about the machine rather than the file: the VRRP interface is absent.
fn interface_messages(interface: &str) -> Vec<String> {
    vec![
        format!("WARNING - interface {interface} for vrrp_instance apiserver_vip doesn't exist"),
        "Non-existent interface specified in configuration".to_string(),
    ]
}

/// All of keepalived -t's messages about the machine: the interface, and the check script being
/// absent or not safe to run (a directory or the file writable by others).
fn environment_messages(interface: &str) -> Vec<String> {
    let mut m = interface_messages(interface);
    m.push("Disabling track script check_apiserver since not found/accessible".to_string());
    m.push("Disabling track script check_apiserver due to insecure".to_string());
    m
}

/// A message without keepalived's `(FILE: Line N) ` or `(Line N) ` prefix.
fn without_location(line: &str) -> &str {
    let Some((loc, msg)) = line.strip_prefix('(').and_then(|r| r.split_once(") ")) else {
        return line;
    };
    match loc.rsplit_once("Line ") {
        Some((_, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => msg,
        _ => line,
    }
}

/// The lines of keepalived -t output that are not one of the `allowed` messages exactly: the
/// configuration errors.
fn config_errors<'a>(output: &'a str, allowed: &[String]) -> Vec<&'a str> {
    output
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .filter(|l| !allowed.iter().any(|a| a == without_location(l)))
        .collect()
}

#[test]
fn keepalived_checks_every_generated_config() {
    let dir = tempfile::tempdir().unwrap();
    // A safe place for the check script (keepalived's script security refuses one in a directory
    // others can write to): the temp dir is the test user's own, mode 0700.
    let script = dir.path().join("check_apiserver.sh");
    let mut checked = 0;
    for (label, text) in INVENTORIES {
        let spec = spec(text);
        std::fs::write(&script, keepalived::check_script(&spec)).unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let interface = spec.load_balancer.interface.clone().unwrap();
        let hosts = spec.lb_hosts();
        assert_eq!(hosts.len(), if label == "dedicated" { 2 } else { 3 });
        for (i, host) in hosts.iter().enumerate() {
            let conf = keepalived::render(&spec, hosts, i);
            let name = format!("{label}-{}.conf", host.name);

            // As generated: only the machine's shortcomings (no /etc/keepalived/check_apiserver.sh
            // here, maybe no eth0) are reported.
            let (code, said) = keepalived_check(dir.path(), &name, &conf);
            let errors = config_errors(&said, &environment_messages(&interface));
            assert!(
                errors.is_empty(),
                "keepalived -t finds errors in {name} (exit {code}): {errors:?}\n{said}\n{conf}"
            );

            // With the check script in place, only a missing interface may remain; where the
            // interface exists the file passes outright.
            let conf = edit(
                &conf,
                &format!("script \"{}\"", keepalived::CHECK_HOST_PATH),
                &format!("script \"{}\"", script.display()),
            );
            let (code, said) = keepalived_check(dir.path(), &name, &conf);
            let errors = config_errors(&said, &interface_messages(&interface));
            assert!(
                errors.is_empty(),
                "keepalived -t finds errors in {name} with its script (exit {code}): {errors:?}\n{said}\n{conf}"
            );
            if Path::new("/sys/class/net").join(&interface).exists() {
                assert!(
                    code == 0 && said.trim().is_empty(),
                    "keepalived -t does not pass {name} with its script and interface (exit {code}):\n{said}\n{conf}"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 5);

    // The interface messages are keepalived's exact words: a surely absent interface is classified
    // as environmental, not as an error (on machines with eth0 they are not otherwise seen).
    let spec = spec(ON_CONTROL_PLANE);
    let conf = keepalived::render(&spec, spec.lb_hosts(), 0);
    let absent = "cpkeepnone0";
    assert!(!Path::new("/sys/class/net").join(absent).exists());
    let no_iface = edit(
        &conf,
        "    interface eth0\n",
        &format!("    interface {absent}\n"),
    );
    let (code, said) = keepalived_check(dir.path(), "no-interface.conf", &no_iface);
    assert!(
        said.contains(absent),
        "keepalived -t is silent about interface {absent} (exit {code}):\n{said}"
    );
    let errors = config_errors(&said, &environment_messages(absent));
    assert!(errors.is_empty(), "unclassified: {errors:?}\n{said}");

    // The classifier bites: each broken copy yields a configuration error it does not excuse.
    let conf = edit(
        &conf,
        &format!("script \"{}\"", keepalived::CHECK_HOST_PATH),
        &format!("script \"{}\"", script.display()),
    );
    let broken = [
        (
            "priority",
            edit(&conf, "    priority 150\n", "    priority 999\n"),
            "Priority not valid! must be between 1 & 255",
        ),
        (
            "keyword",
            edit(
                &conf,
                "    advert_int 1\n",
                "    advert_int 1\n    preempt_eagerly\n",
            ),
            "Unknown keyword 'preempt_eagerly'",
        ),
        (
            "brace",
            conf.trim_end().strip_suffix('}').unwrap().to_string(),
            "missing '}'s or extra '{'s",
        ),
        (
            "vip",
            edit(&conf, "        192.168.1.20\n", "        192.168.1.300\n"),
            "VRRP parsed invalid IP 192.168.1.300",
        ),
    ];
    for (what, text, expected) in broken {
        let (code, said) = keepalived_check(dir.path(), &format!("broken-{what}.conf"), &text);
        let errors = config_errors(
            &said,
            &environment_messages(&spec.load_balancer.interface.clone().unwrap()),
        );
        assert!(
            errors.iter().any(|l| l.contains(expected)),
            "broken {what}: no error {expected:?} among {errors:?} (exit {code}):\n{said}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Fake apiservers behind the real haproxy
// ---------------------------------------------------------------------------------------------

/// What one fake apiserver has done.
#[derive(Default)]
struct Stats {
    /// Requests other than /readyz: client traffic haproxy sent it.
    served: AtomicUsize,
    /// /readyz requests: haproxy's checks (and the check script's probes, through haproxy).
    checks: AtomicUsize,
    /// When it answered one with 500.
    failed_checks: Mutex<Vec<Instant>>,
}

/// An HTTPS server on 127.0.0.1 that answers `GET /readyz` with 200 while ready and 500 when not,
/// and any other path with 200 and its name.
struct FakeApiserver {
    name: String,
    port: u16,
    ready: Arc<AtomicBool>,
    stats: Arc<Stats>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeApiserver {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

impl FakeApiserver {
    async fn start(name: &str, acceptor: tokio_rustls::TlsAcceptor) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let ready = Arc::new(AtomicBool::new(true));
        let stats = Arc::new(Stats::default());
        let task = tokio::spawn(serve(
            listener,
            acceptor,
            name.to_string(),
            ready.clone(),
            stats.clone(),
        ));
        Self {
            name: name.to_string(),
            port,
            ready,
            stats,
            task: Some(task),
        }
    }

    fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    fn served(&self) -> usize {
        self.stats.served.load(Ordering::SeqCst)
    }

    fn checks(&self) -> usize {
        self.stats.checks.load(Ordering::SeqCst)
    }

    fn failed_checks(&self) -> Vec<Instant> {
        self.stats.failed_checks.lock().unwrap().clone()
    }

    /// Closes the listener and every open connection, as when the apiserver process dies; returns
    /// once they are closed.
    async fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            assert!(t.await.unwrap_err().is_cancelled());
        }
    }
}

/// Accepts connections until aborted; the connections live in a JoinSet so aborting closes them too.
async fn serve(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    name: String,
    ready: Arc<AtomicBool>,
    stats: Arc<Stats>,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                conns.spawn(answer(tcp, acceptor.clone(), name.clone(), ready.clone(), stats.clone()));
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// One request on one connection, then close (haproxy's checks and curl both send one).
async fn answer(
    tcp: tokio::net::TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    name: String,
    ready: Arc<AtomicBool>,
    stats: Arc<Stats>,
) {
    let Ok(Ok(mut s)) = tokio::time::timeout(Duration::from_secs(5), acceptor.accept(tcp)).await
    else {
        return;
    };
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split(' ').nth(1).unwrap_or("");
    let (status, body) = if path == "/readyz" {
        stats.checks.fetch_add(1, Ordering::SeqCst);
        if ready.load(Ordering::SeqCst) {
            ("200 OK", "ok".to_string())
        } else {
            stats.failed_checks.lock().unwrap().push(Instant::now());
            (
                "500 Internal Server Error",
                "readyz check failed".to_string(),
            )
        }
    } else {
        stats.served.fetch_add(1, Ordering::SeqCst);
        ("200 OK", name)
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(response.as_bytes()).await;
    let _ = s.shutdown().await;
}

/// One self-signed certificate for all the fake apiservers (clients do not verify it, as haproxy's
/// checks do not).
fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let chain = vec![ck.cert.der().clone()];
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    harness::tls_acceptor(chain, key)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The hard limit on open files of this process (and so of its children).
fn hard_nofile() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(4)?.parse().ok()
}

/// haproxy refuses to start when it cannot raise its open-file limit to about twice the global
/// `maxconn` (2.6: "Cannot raise FD limit to 40020, limit is 20000"), and an unprivileged sandbox
/// may not allow that: lower `maxconn` to what the hard limit allows, saying so. Nothing under test
/// depends on it.
pub(crate) fn fit_maxconn(cfg: String) -> String {
    let line = cfg
        .lines()
        .find(|l| l.trim_start().starts_with("maxconn "))
        .expect("a global maxconn")
        .to_string();
    let maxconn: u64 = line.trim().trim_start_matches("maxconn ").parse().unwrap();
    match hard_nofile() {
        Some(hard) if 2 * maxconn + 100 > hard => {
            let fits = (hard - 100) / 2;
            eprintln!("note: hard limit of {hard} open files; haproxy runs with maxconn {fits}, not {maxconn}");
            edit(&cfg, &format!("{line}\n"), &format!("    maxconn {fits}\n"))
        }
        _ => cfg,
    }
}

/// The generated haproxy.cfg of [`ON_CONTROL_PLANE`] running on loopback in front of three fake
/// apiservers, one per control-plane node; haproxy is killed on drop.
struct Fixture {
    spec: ClusterSpec,
    servers: Vec<FakeApiserver>,
    /// The frontend's port on 127.0.0.1.
    port: u16,
    dir: tempfile::TempDir,
    log: PathBuf,
    _haproxy: tokio::process::Child,
}

impl Fixture {
    async fn start() -> Self {
        let spec = spec(ON_CONTROL_PLANE);
        let acceptor = tls_acceptor();
        let mut servers = Vec::new();
        for n in &spec.control_plane {
            servers.push(FakeApiserver::start(&n.name, acceptor.clone()).await);
        }
        let port = free_port();
        let mut cfg = haproxy::render(&spec);
        for (n, s) in spec.control_plane.iter().zip(&servers) {
            cfg = edit(
                &cfg,
                &format!(
                    "    server {} {}:{APISERVER_BIND_PORT}\n",
                    n.name, n.address
                ),
                &format!("    server {} 127.0.0.1:{}\n", n.name, s.port),
            );
        }
        cfg = edit(
            &cfg,
            &format!("    bind *:{}\n", spec.load_balancer.port),
            &format!("    bind 127.0.0.1:{port}\n"),
        );
        assert!(
            cfg.lines()
                .all(|l| l.starts_with('#') || !l.contains("192.168.")),
            "not all on loopback:\n{cfg}"
        );

        let cfg = fit_maxconn(cfg);

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("haproxy.cfg");
        std::fs::write(&file, &cfg).unwrap();
        // Its log (stdout) and messages (stderr) go to a file: a pipe nobody reads would fill up.
        let log = dir.path().join("haproxy.log");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let err = out.try_clone().unwrap();
        let mut child = tokio::process::Command::new(harness::tool("haproxy"))
            .args(["-db", "-f"])
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .expect("start haproxy");

        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Some(st) = child.try_wait().unwrap() {
                panic!(
                    "haproxy exited ({st}):\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "haproxy does not listen on 127.0.0.1:{port}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let f = Self {
            spec,
            servers,
            port,
            dir,
            log,
            _haproxy: child,
        };
        // haproxy spreads its first checks over one interval.
        f.wait_for(
            "haproxy to check every apiserver",
            Duration::from_secs(u64::from(haproxy::CHECK_INTER_SECS) * 2 + 5),
            |f| f.servers.iter().all(|s| s.checks() > 0),
        )
        .await;
        f
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `done` every 20 ms until it holds; fails the test after `limit`.
    async fn wait_for(&self, what: &str, limit: Duration, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + limit;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "timed out after {limit:?} waiting for {what}; haproxy log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// GET /version through the frontend with curl (TLS not verified): the name of the apiserver
    /// that answered, or why the request failed.
    async fn get(&self) -> Result<String, String> {
        let out = tokio::process::Command::new(harness::tool("curl"))
            .args(["-sSfk", "--max-time", "5"])
            .arg(format!("https://127.0.0.1:{}/version", self.port))
            .output()
            .await
            .expect("run curl");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "curl {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// [`Fixture::get`], failing the test when the request fails.
    async fn get_ok(&self, when: &str) -> String {
        match self.get().await {
            Ok(name) => {
                assert!(
                    self.servers.iter().any(|s| s.name == name),
                    "unexpected answer {name:?}"
                );
                name
            }
            Err(e) => panic!(
                "a request through the endpoint failed {when}: {e}\nhaproxy log:\n{}",
                self.log()
            ),
        }
    }
}

fn secs(s: u32) -> Duration {
    Duration::from_secs(u64::from(s))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_stops_sending_traffic_to_a_failing_apiserver() {
    let mut f = Fixture::start().await;
    let inter = secs(haproxy::CHECK_INTER_SECS);
    // Scheduling of haproxy's checks, of curl and of this test.
    let margin = Duration::from_millis(1000);

    // (a) Round robin over all three.
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..9 {
        *seen
            .entry(f.get_ok("with all apiservers ready").await)
            .or_default() += 1;
    }
    for s in &f.servers {
        assert!(
            seen.get(&s.name).copied().unwrap_or(0) > 0,
            "{} got no traffic: {seen:?}",
            s.name
        );
        assert_eq!(
            s.served(),
            seen[&s.name],
            "{} counted other requests",
            s.name
        );
        assert!(s.failed_checks().is_empty());
    }

    // (b) cp2's /readyz fails: it keeps getting traffic (and answering it) until haproxy has seen
    // CHECK_FALL failed checks, then none; no client request fails meanwhile.
    let cp2 = &f.servers[1];
    assert_eq!(cp2.name, "cp2");
    let flipped = Instant::now();
    cp2.set_ready(false);
    const K: usize = 12;
    let limit = inter * (haproxy::CHECK_FALL + 1) + Duration::from_secs(10);
    let (mut last_hit, mut streak, mut requests) = (None, 0, 0);
    loop {
        let name = f.get_ok("while cp2 fails its checks").await;
        requests += 1;
        if name == "cp2" {
            last_hit = Some(Instant::now());
            streak = 0;
        } else {
            streak += 1;
        }
        if f.servers[1].failed_checks().len() >= haproxy::CHECK_FALL as usize && streak >= K {
            break;
        }
        assert!(
            flipped.elapsed() < limit,
            "cp2 still gets traffic {limit:?} after failing /readyz ({} failed checks); haproxy log:\n{}",
            f.servers[1].failed_checks().len(),
            f.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fails = f.servers[1].failed_checks();
    let marked_down = fails[haproxy::CHECK_FALL as usize - 1] - flipped;
    let last_hit = last_hit
        .map(|t| t - flipped)
        .expect("cp2 got no traffic after the flip: haproxy took it out before its fall count");
    eprintln!(
        "cp2: failed check {} at {marked_down:?} after the flip, last request at {last_hit:?}; {requests} requests, none failed",
        haproxy::CHECK_FALL
    );
    let most = inter * (haproxy::CHECK_FALL + 1) + margin;
    assert!(
        last_hit <= most,
        "cp2 got traffic {last_hit:?} after failing /readyz (at most {most:?})"
    );
    assert!(
        marked_down <= most,
        "haproxy took {marked_down:?} to see {} failed checks",
        haproxy::CHECK_FALL
    );
    // One failed check does not take an apiserver out: the fall count is honoured.
    let least = inter * (haproxy::CHECK_FALL - 1) - Duration::from_millis(300);
    assert!(
        marked_down >= least,
        "cp2 was taken out after {marked_down:?} (at least {least:?})"
    );
    let down_line = "Server apiservers/cp2 is DOWN, reason: Layer7 wrong status, code: 500";
    f.wait_for("haproxy to log cp2 DOWN", Duration::from_secs(5), |f| {
        f.log().contains(down_line)
    })
    .await;

    // cp2 ready again: back in rotation after CHECK_RISE passed checks.
    let recovered = Instant::now();
    f.servers[1].set_ready(true);
    let served = f.servers[1].served();
    let limit = inter * (haproxy::CHECK_RISE + 1) + Duration::from_secs(10);
    while f.servers[1].served() == served {
        f.get_ok("while cp2 recovers").await;
        assert!(
            recovered.elapsed() < limit,
            "cp2 gets no traffic {limit:?} after recovering; haproxy log:\n{}",
            f.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let back = recovered.elapsed();
    eprintln!("cp2: back in rotation {back:?} after /readyz passed again");
    f.wait_for("haproxy to log cp2 UP", Duration::from_secs(5), |f| {
        f.log()
            .contains("Server apiservers/cp2 is UP, reason: Layer7 check passed, code: 200")
    })
    .await;
    let most = inter * (haproxy::CHECK_RISE + 1) + margin;
    assert!(
        back <= most,
        "cp2 took {back:?} to get traffic again (at most {most:?})"
    );

    // (c) cp2 dies while haproxy still counts it up: connections to it are refused and redispatched
    // (`option redispatch`, `retries 1`), so no request fails and none reaches it.
    f.servers[1].stop().await;
    let served = f.servers[1].served();
    let stopped = Instant::now();
    for i in 0..30 {
        let name = f.get_ok(&format!("(request {i}) after cp2 stopped")).await;
        assert_ne!(name, "cp2");
    }
    eprintln!(
        "30 requests in {:?} after cp2 stopped, none failed",
        stopped.elapsed()
    );
    assert_eq!(f.servers[1].served(), served);
    // Those meant for cp2 were redispatched (haproxy's checks had not yet taken it out): its tcplog
    // marks a redispatched connection's retry count with '+'.
    f.wait_for(
        "haproxy to log a redispatched connection",
        Duration::from_secs(5),
        |f| {
            f.log()
                .lines()
                .any(|l| l.contains(" apiserver apiservers/") && l.contains("/+1 "))
        },
    )
    .await;
    for s in [&f.servers[0], &f.servers[2]] {
        assert!(s.failed_checks().is_empty(), "{} failed a check", s.name);
    }
}

// ---------------------------------------------------------------------------------------------
// keepalived's check script
// ---------------------------------------------------------------------------------------------

/// Runs a check script with `sh`, with tools/bin (curl, ip) first on PATH: exit code and stderr.
async fn run_script(dir: &Path, name: &str, text: &str) -> (i32, String) {
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    let curl = harness::tool("curl");
    harness::tool("ip");
    let bin = curl.parent().unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new("sh")
            .arg(&file)
            .env(
                "PATH",
                format!(
                    "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    bin.display()
                ),
            )
            .output(),
    )
    .await
    .expect("the check script does not end")
    .expect("run sh");
    let code = out.status.code().unwrap_or(-1);
    (code, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalived_check_script_probes_the_endpoint() {
    let f = Fixture::start().await;
    let generated = keepalived::check_script(&f.spec);
    let vip = f.spec.load_balancer.vip.unwrap().to_string();
    let port_line = format!("PORT='{}'\n", f.spec.load_balancer.port);
    let at = |holder: &str, url_host: &str| {
        let s = edit(
            &generated,
            &format!("VIP='{vip}'\n"),
            &format!("VIP='{holder}'\n"),
        );
        let s = edit(&s, &port_line, &format!("PORT='{}'\n", f.port));
        let s = s.replace(&vip, url_host);
        assert!(
            s.lines()
                .all(|l| l.starts_with('#') || !l.contains("192.168.")),
            "not all on loopback:\n{s}"
        );
        s
    };
    // This host holds the VIP (127.0.0.1 is on lo) and the endpoint answers through it.
    let holder = at("127.0.0.1", "127.0.0.1");
    let (code, err) = run_script(f.dir.path(), "holder.sh", &holder).await;
    assert_eq!((code, err.as_str()), (0, ""), "{holder}");

    // On the VIP's holder, the endpoint must answer through the VIP too: nothing listens on
    // 127.0.0.2 (also lo's), so the check fails.
    let broken_vip = at("127.0.0.1", "127.0.0.2");
    let (code, err) = run_script(f.dir.path(), "broken-vip.sh", &broken_vip).await;
    assert_eq!(
        (code, err.as_str()),
        (
            1,
            format!(
                "*** the endpoint does not answer through the VIP (https://127.0.0.2:{}/readyz)\n",
                f.port
            )
            .as_str()
        ),
        "{broken_vip}"
    );
    // A host without the VIP (127.0.0.2 is on no interface) does not probe it.
    let (code, err) =
        run_script(f.dir.path(), "not-holder.sh", &at("127.0.0.2", "127.0.0.2")).await;
    assert_eq!((code, err.as_str()), (0, ""));

    // No apiserver ready: once haproxy has taken all three out, the check fails and says why.
    for s in &f.servers {
        s.set_ready(false);
    }
    let fall = haproxy::CHECK_FALL as usize;
    f.wait_for(
        "every apiserver to fail enough checks",
        secs(haproxy::CHECK_INTER_SECS) * (haproxy::CHECK_FALL + 1) + Duration::from_secs(10),
        |f| f.servers.iter().all(|s| s.failed_checks().len() >= fall),
    )
    .await;
    f.wait_for(
        "haproxy to log that no server is left",
        Duration::from_secs(5),
        |f| {
            f.log()
                .contains("backend apiservers has no server available!")
        },
    )
    .await;
    let (code, err) = run_script(f.dir.path(), "holder.sh", &holder).await;
    assert_eq!(
        (code, err.as_str()),
        (
            1,
            format!(
                "*** no ready apiserver through this host's haproxy (https://127.0.0.1:{}/readyz)\n",
                f.port
            )
            .as_str()
        ),
        "haproxy log:\n{}",
        f.log()
    );
}
