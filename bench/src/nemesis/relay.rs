//! Delays between nodes without `netem` (this kernel has none): every node reaches each peer
//! through a relay listening on loopback inside the node's own namespace, which dials the peer
//! from that namespace (so the partitions' blackhole routes still apply) and holds each chunk of
//! bytes for the current delay, `delay ± jitter`, before passing it on. Chunks never overtake
//! each other (a TCP stream stays a stream), so the jitter delays bursts, not reorders bytes.
//! With the delay at zero the relay only copies.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// How often blocked relay threads look at the stop flag.
const POLL_MS: u64 = 100;
/// The largest chunk read and held at once.
const CHUNK_BYTES: usize = 64 * 1024;
/// Chunks held per direction before the reader waits (bounds the relay's memory).
const QUEUE_CHUNKS: usize = 1024;

/// The delay every relay applies now; shared by all of a run's relays.
#[derive(Default)]
pub struct Delay {
    delay_ms: AtomicU64,
    jitter_ms: AtomicU64,
    stop: AtomicBool,
}

impl Delay {
    pub fn set(&self, delay_ms: u64, jitter_ms: u64) {
        assert!(jitter_ms <= delay_ms, "a delay never goes negative");
        self.delay_ms.store(delay_ms, Ordering::Relaxed);
        self.jitter_ms.store(jitter_ms, Ordering::Relaxed);
    }

    /// Stops every relay (their threads end within `POLL_MS`).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn sample(&self) -> Duration {
        let delay = self.delay_ms.load(Ordering::Relaxed);
        let jitter = self.jitter_ms.load(Ordering::Relaxed);
        if delay == 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(delay - jitter + super::random_below(2 * jitter + 1))
    }
}

/// Starts a relay inside `namespace` on `127.0.0.1:<port>` forwarding to `upstream`.
pub fn start(
    namespace: String,
    port: u16,
    upstream: SocketAddr,
    delay: Arc<Delay>,
) -> Result<(), String> {
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name(format!("relay-{port}"))
        .spawn(move || {
            let listener = super::net::enter(&namespace).and_then(|()| {
                let listener = TcpListener::bind(("127.0.0.1", port))
                    .map_err(|e| format!("relay bind {port} in {namespace}: {e}"))?;
                listener.set_nonblocking(true).map_err(|e| e.to_string())?;
                Ok(listener)
            });
            let listener = match listener {
                Ok(listener) => {
                    let _ = ready_tx.send(Ok(()));
                    listener
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            while !delay.stopped() {
                match listener.accept() {
                    Ok((inbound, _)) => {
                        let delay = delay.clone();
                        // The thread is in the namespace already; the dial below is too.
                        std::thread::spawn(move || relay_connection(inbound, upstream, delay));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(POLL_MS));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(POLL_MS)),
                }
            }
        })
        .map_err(|e| e.to_string())?;
    ready_rx
        .recv()
        .map_err(|_| "relay thread ended".to_string())?
}

fn relay_connection(inbound: TcpStream, upstream: SocketAddr, delay: Arc<Delay>) {
    let _ = inbound.set_nonblocking(false);
    // Threads spawned by the accept thread inherit its namespace, so this dial leaves from the
    // node's namespace.
    let Ok(outbound) = TcpStream::connect_timeout(&upstream, Duration::from_millis(1000)) else {
        let _ = inbound.shutdown(Shutdown::Both);
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (Ok(in2), Ok(out2)) = (inbound.try_clone(), outbound.try_clone()) else {
        return;
    };
    let d2 = delay.clone();
    std::thread::spawn(move || pump(in2, out2, d2));
    pump(outbound, inbound, delay);
}

/// Copies `from` to `to`, each chunk held until its delivery time.
fn pump(mut from: TcpStream, to: TcpStream, delay: Arc<Delay>) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(POLL_MS)));
    let (tx, rx) = mpsc::sync_channel::<(Instant, Vec<u8>)>(QUEUE_CHUNKS);
    let writer_delay = delay.clone();
    let mut to_writer = match to.try_clone() {
        Ok(to) => to,
        Err(_) => return,
    };
    let writer = std::thread::spawn(move || {
        while let Ok((at, chunk)) = rx.recv() {
            if writer_delay.stopped() {
                break;
            }
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
            if to_writer.write_all(&chunk).is_err() {
                break;
            }
        }
        // The reader ended (or the peer went away): pass the end on.
        let _ = to_writer.shutdown(Shutdown::Write);
    });
    let mut last = Instant::now();
    let mut buf = vec![0u8; CHUNK_BYTES];
    loop {
        if delay.stopped() {
            break;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                // Never before the previous chunk: bytes keep their order.
                let at = (Instant::now() + delay.sample()).max(last);
                last = at;
                if tx.send((at, buf[..n].to_vec())).is_err() {
                    break;
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
    drop(tx);
    let _ = writer.join();
    let _ = from.shutdown(Shutdown::Read);
    let _ = to.shutdown(Shutdown::Write);
}
