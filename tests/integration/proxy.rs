//! A small fault-injecting TCP proxy on loopback, placed between cpkeep and one etcd member to
//! corrupt, freeze or cut the server's bytes at a chosen offset of each connection.

#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does to server→client bytes once a connection has carried `at` of them.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Flip one bit of the byte at offset `at`.
    Flip { at: u64 },
    /// Stop forwarding at `at`: the client hears nothing more, until the server closes (then the
    /// client is closed too, as when a member dies).
    Freeze { at: u64 },
    /// Hold the bytes for `millis` once at `at`, then go on.
    Pause { at: u64, millis: u64 },
    /// Close both directions at `at`.
    Cut { at: u64 },
}

pub struct FaultProxy {
    pub port: u16,
    /// Set once a connection reached the fault offset.
    pub triggered: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Listens on 127.0.0.1 and forwards to `upstream` (host:port) with `fault`.
    pub async fn start(upstream: String, fault: Fault) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let triggered = Arc::new(AtomicBool::new(false));
        let t = triggered.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let up = upstream.clone();
                let t = t.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&up).await {
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        let (mut cr, mut cw) = client.into_split();
                        let (mut sr, mut sw) = server.into_split();
                        let up_task = tokio::spawn(async move {
                            let _ = tokio::io::copy(&mut cr, &mut sw).await;
                        });
                        let mut seen: u64 = 0;
                        let mut frozen = false;
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = match sr.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            let (start, end) = (seen, seen + n as u64);
                            seen = end;
                            match fault {
                                Fault::Flip { at } if at >= start && at < end => {
                                    buf[(at - start) as usize] ^= 0x01;
                                    t.store(true, Ordering::SeqCst);
                                }
                                Fault::Freeze { at } if end > at => {
                                    t.store(true, Ordering::SeqCst);
                                    frozen = true;
                                }
                                Fault::Pause { at, millis }
                                    if end > at && !t.load(Ordering::SeqCst) =>
                                {
                                    t.store(true, Ordering::SeqCst);
                                    tokio::time::sleep(std::time::Duration::from_millis(millis))
                                        .await;
                                }
                                Fault::Cut { at } if end > at => {
                                    t.store(true, Ordering::SeqCst);
                                    break;
                                }
                                _ => {}
                            }
                            if frozen {
                                continue;
                            }
                            if cw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        up_task.abort();
                    }
                });
            }
        });
        Self {
            port,
            triggered,
            task,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
