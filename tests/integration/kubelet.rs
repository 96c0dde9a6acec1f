//! A fake kubelet for one static pod manifest, shared by the kubeadm restore and the certificate
//! restart tests: it runs real etcd with the manifest's command while the file exists, kills it
//! when the file goes away, and restarts it after a one-second back-off when it exits.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::Etcd;

/// Stopped (and its etcd killed) on drop.
pub struct Kubelet {
    stop: Arc<AtomicBool>,
    starts: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Kubelet {
    /// Watches `manifest`; `args` turns its text into etcd's arguments (without the program).
    /// etcd's output is appended to `log`.
    pub fn start(manifest: PathBuf, log: PathBuf, args: fn(&str) -> Vec<String>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let starts = Arc::new(AtomicUsize::new(0));
        let (stop2, starts2) = (stop.clone(), starts.clone());
        let etcd = Etcd::V35.etcd();
        let thread = std::thread::spawn(move || {
            let mut child: Option<Child> = None;
            let mut last_exit = Instant::now() - Duration::from_secs(10);
            while !stop2.load(Ordering::SeqCst) {
                let present = manifest.is_file();
                if let Some(c) = child.as_mut() {
                    if !present {
                        let _ = c.kill();
                        let _ = c.wait();
                        child = None;
                    } else if let Ok(Some(_)) = c.try_wait() {
                        // Crashed: the kubelet restarts it after a back-off.
                        child = None;
                        last_exit = Instant::now();
                    }
                } else if present && last_exit.elapsed() > Duration::from_secs(1) {
                    if let Ok(text) = std::fs::read_to_string(&manifest) {
                        let out = std::fs::OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(&log)
                            .unwrap();
                        let err = out.try_clone().unwrap();
                        child = Some(
                            Command::new(&etcd)
                                .args(args(&text))
                                .stdin(Stdio::null())
                                .stdout(out)
                                .stderr(err)
                                .spawn()
                                .expect("start etcd"),
                        );
                        starts2.fetch_add(1, Ordering::SeqCst);
                    }
                }
                std::thread::sleep(Duration::from_millis(150));
            }
            if let Some(mut c) = child {
                let _ = c.kill();
                let _ = c.wait();
            }
        });
        Kubelet {
            stop,
            starts,
            thread: Some(thread),
        }
    }

    /// How many times it started etcd.
    pub fn starts(&self) -> usize {
        self.starts.load(Ordering::SeqCst)
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
