//! The front door under attack, all at once, on loopback: idle connections,
//! slowloris clients, clients that never read, bodies declared and never
//! sent, absurd lengths and headers, and pooled keep-alive players, while a
//! well-behaved client fetches a playlist and a cached segment every half
//! second. Every request of the good client and of each player must
//! succeed, every attacker must be refused or cut off, and the server's
//! threads, descriptors and memory must stay under the bounds stated here.
//! The figures (latency loaded and unloaded, peaks) are printed.
//!
//! Set `FRONT_DOOR_SECONDS` to run the attack longer (the benchmark does).

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::http_client::{read_reply, send, Server};
use crate::support::{fixture, make_big_source, report};

/// Bounds on the server process under the whole attack: threads (a few
/// carry the connections; the blocking pool is `workers` + 16), open
/// descriptors (one per connection, about 670 here, plus files), memory.
const MAX_THREADS: u64 = 64;
const MAX_FDS: u64 = 1_000;
const MAX_RSS_MB: u64 = 256;

const IDLE: usize = 500;
const SLOWLORIS: usize = 50;
const NON_READERS: usize = 64;
const SILENT_BODIES: usize = 32;
const PLAYERS: usize = 20;

const HEADER_TIMEOUT: u64 = 3;
const SEND_TIMEOUT: u64 = 3;

const PLAYLIST: &str = "/i/film.mp4/index_0_av.m3u8";
const SEGMENT: &str = "/i/film.mp4/segment2_0_av.ts";
const BIG_SEGMENT: &str = "/i/big.mp4/segment1_0_v.ts";

#[test]
#[cfg_attr(casterpak_no_ffmpeg, ignore = "needs ffmpeg (to make a 4 MB segment)")]
fn the_front_door_holds_under_every_attack_at_once() {
    raise_fd_limit();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("media");
    std::fs::create_dir(&root).unwrap();
    std::fs::copy(fixture("h264-aac-bframes.mp4"), root.join("film.mp4")).unwrap();
    make_big_source(&root.join("big.mp4"), 2);
    let timeouts = [
        (
            "CASTERPAK_SERVER_HEADER_TIMEOUT",
            HEADER_TIMEOUT.to_string(),
        ),
        ("CASTERPAK_SERVER_SEND_TIMEOUT", SEND_TIMEOUT.to_string()),
    ];
    let env: Vec<(&str, &str)> = timeouts.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut server = Server::start_with_env(&root, &dir.path().join("cache"), &[], &env);
    let addr: SocketAddr = server.addr.parse().unwrap();
    // Warm the cache: the good client and the players fetch cached objects.
    for path in [PLAYLIST, SEGMENT, BIG_SEGMENT] {
        assert_eq!(server.get(path).status, 200, "{path}");
    }
    let big_len = server.get(BIG_SEGMENT).body.len();
    assert!(big_len >= 4 << 20, "the big segment has {big_len} bytes");

    let unloaded = good_client(&server.addr, 20, Duration::from_millis(100));
    let seconds = std::env::var("FRONT_DOOR_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let sampler = Sampler::start(server.pid());
    let stop = AtomicBool::new(false);
    let (loaded, attack) = std::thread::scope(|scope| {
        let idle: Vec<TcpStream> = (0..IDLE)
            .map(|_| TcpStream::connect(addr).unwrap())
            .collect();
        let slowloris: Vec<_> = (0..SLOWLORIS)
            .map(|_| scope.spawn(|| slowloris(addr, &stop)))
            .collect();
        let non_readers: Vec<TcpStream> = (0..NON_READERS).map(|_| non_reader(addr)).collect();
        let players: Vec<_> = (0..PLAYERS)
            .map(|_| scope.spawn(|| player(addr, &stop)))
            .collect();
        let refusals = hostile_requests(addr);
        let rounds = (seconds * 2) as usize;
        let loaded = good_client(&server.addr, rounds, Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        let attack = Attack {
            slowloris: slowloris.into_iter().map(|h| h.join().unwrap()).collect(),
            players: players.into_iter().map(|h| h.join().unwrap()).collect(),
            non_readers: non_readers.into_iter().map(drain).collect(),
            refusals,
        };
        drop(idle);
        (loaded, attack)
    });
    let peaks = sampler.stop();
    let alive = server.is_running();

    report(&format!(
        "front door: good client p50/p99 {:.1}/{:.1} ms unloaded, {:.1}/{:.1} ms under attack; \
         {} pooled player requests; peaks: {} threads, {} descriptors, {} MB RSS",
        percentile(&unloaded, 50.0),
        percentile(&unloaded, 99.0),
        percentile(&loaded, 50.0),
        percentile(&loaded, 99.0),
        attack.players.iter().sum::<u64>(),
        peaks.threads,
        peaks.fds,
        peaks.rss_kb / 1024,
    ));
    assert!(alive, "the server is still running");
    assert!(
        attack.slowloris.iter().all(|&closed| closed),
        "every slowloris client was cut off: {:?}",
        attack.slowloris
    );
    assert!(
        attack.players.iter().all(|&n| n > 0),
        "every player was answered: {:?}",
        attack.players
    );
    for (received, closed) in &attack.non_readers {
        assert!(*closed, "a client that stopped reading was cut off");
        assert!(*received < big_len, "and got less than the segment");
    }
    for (what, status) in &attack.refusals {
        let expected = match *what {
            "body never sent" | "Content-Length 10^11" => 413,
            "a 9 KiB target" => 414,
            // hyper takes a length it cannot count to as too large.
            _ => 431,
        };
        assert_eq!(*status, expected, "{what}");
    }
    assert!(peaks.threads <= MAX_THREADS, "{} threads", peaks.threads);
    assert!(peaks.fds <= MAX_FDS, "{} descriptors", peaks.fds);
    assert!(peaks.rss_kb / 1024 <= MAX_RSS_MB, "{} kB RSS", peaks.rss_kb);
    // Still answering once the attack is over.
    assert_eq!(server.get(SEGMENT).status, 200);
}

struct Attack {
    /// Per slowloris client: whether the server closed it.
    slowloris: Vec<bool>,
    /// Per player: requests answered (a failure panics the player).
    players: Vec<u64>,
    /// Per non-reader: bytes it had received, and whether it was closed.
    non_readers: Vec<(usize, bool)>,
    /// The hostile single requests and the status each got.
    refusals: Vec<(&'static str, u16)>,
}

/// Latencies in milliseconds of `rounds` fetches of a playlist and a cached
/// segment, each on a new connection, `every` apart; any failure panics.
fn good_client(addr: &str, rounds: usize, every: Duration) -> Vec<f64> {
    let mut latencies = Vec::with_capacity(rounds * 2);
    for _ in 0..rounds {
        let next = Instant::now() + every;
        for path in [PLAYLIST, SEGMENT] {
            let started = Instant::now();
            let reply = crate::http_client::request(addr, "GET", path, &[]);
            assert_eq!(reply.status, 200, "good client: {path}");
            latencies.push(started.elapsed().as_secs_f64() * 1e3);
        }
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    latencies
}

/// A header sent a byte a second; returns whether the server closed the
/// connection before `stop`.
fn slowloris(addr: SocketAddr, stop: &AtomicBool) -> bool {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    let head = b"GET /i/film.mp4/master.m3u8 HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    for byte in head.iter().chain(std::iter::repeat(&b'a')) {
        if stream.write_all(&[*byte]).is_err() || server_closed(&mut stream) {
            return true;
        }
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    unreachable!("the header never ends")
}

/// Whether the peer has closed `stream` (an answer before that is fine).
fn server_closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
}

/// A client with a tiny receive window that asks for the big segment and
/// never reads.
fn non_reader(addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(1024).unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut stream: TcpStream = socket.into();
    send(&mut stream, "GET", BIG_SEGMENT, &[], false);
    stream
}

/// Reads what a non-reader was sent until the server's close; returns the
/// bytes and whether the connection was closed.
fn drain(mut stream: TcpStream) -> (usize, bool) {
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut received = 0;
    let mut buf = vec![0; 64 << 10];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (received, true),
            Ok(n) => received += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (received, true),
            Err(_) => return (received, false),
        }
    }
}

/// A player on one keep-alive connection: playlist, then segments, again
/// and again until `stop`; returns how many requests were answered.
fn player(addr: SocketAddr, stop: &AtomicBool) -> u64 {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut answered = 0;
    while !stop.load(Ordering::Relaxed) {
        for path in [PLAYLIST, SEGMENT, "/i/film.mp4/segment1_0_av.ts"] {
            send(&mut writer, "GET", path, &[], false);
            let reply = read_reply(&mut reader, false);
            assert_eq!(reply.status, 200, "player: {path}");
            answered += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    answered
}

/// Requests the server must refuse: each gets its status (0: closed
/// without one).
fn hostile_requests(addr: SocketAddr) -> Vec<(&'static str, u16)> {
    let target = "GET /i/film.mp4/master.m3u8 HTTP/1.1\r\nHost: x\r\n";
    let many_fields: String = (0..10_000).map(|i| format!("X-F{i}: v\r\n")).collect();
    let cases: Vec<(&str, String)> = vec![
        (
            "Content-Length 10^11",
            format!("{target}Content-Length: 100000000000\r\n\r\n"),
        ),
        (
            "Content-Length 2^64-1",
            format!("{target}Content-Length: 18446744073709551615\r\n\r\n"),
        ),
        (
            "1 MB header line",
            format!("{target}X-Big: {}\r\n\r\n", "a".repeat(1 << 20)),
        ),
        ("10,000 header fields", format!("{target}{many_fields}\r\n")),
        (
            "a 9 KiB target",
            format!("GET /i/{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9 << 10)),
        ),
    ];
    let mut statuses: Vec<(&str, u16)> = Vec::new();
    let silent: Vec<TcpStream> = (0..SILENT_BODIES)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(format!("{target}Content-Length: 5000\r\n\r\n").as_bytes())
                .unwrap();
            s
        })
        .collect();
    for s in silent {
        statuses.push(("body never sent", status_of(s)));
    }
    for (what, request) in cases {
        let mut s = TcpStream::connect(addr).unwrap();
        // The server may close before reading it all.
        let _ = s.write_all(request.as_bytes());
        statuses.push((what, status_of(s)));
    }
    statuses
}

fn status_of(stream: TcpStream) -> u16 {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut line = String::new();
    let _ = std::io::BufRead::read_line(&mut BufReader::new(stream), &mut line);
    line.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[derive(Default, Clone, Copy)]
struct Peaks {
    threads: u64,
    fds: u64,
    rss_kb: u64,
}

/// Samples the server's threads, descriptors and RSS from /proc.
struct Sampler {
    stop: Arc<AtomicBool>,
    peaks: Arc<Mutex<Peaks>>,
    thread: std::thread::JoinHandle<()>,
    _samples: Arc<AtomicU64>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peaks = Arc::new(Mutex::new(Peaks::default()));
        let samples = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, peaks, samples) = (stop.clone(), peaks.clone(), samples.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let now = sample(pid);
                    let mut p = peaks.lock().unwrap();
                    p.threads = p.threads.max(now.threads);
                    p.fds = p.fds.max(now.fds);
                    p.rss_kb = p.rss_kb.max(now.rss_kb);
                    samples.fetch_add(1, Ordering::Relaxed);
                    drop(p);
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        Sampler {
            stop,
            peaks,
            thread,
            _samples: samples,
        }
    }

    fn stop(self) -> Peaks {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        *self.peaks.lock().unwrap()
    }
}

fn sample(pid: u32) -> Peaks {
    let count = |dir: String| std::fs::read_dir(dir).map_or(0, |d| d.count() as u64);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    Peaks {
        threads: count(format!("/proc/{pid}/task")),
        fds: count(format!("/proc/{pid}/fd")),
        rss_kb,
    }
}

fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank]
}

/// This test holds about 700 sockets open at once, and the server as
/// many: raise the soft descriptor limit to the hard one (the server
/// inherits it).
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write `limit`.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
    assert!(
        limit.rlim_max >= 2_048,
        "the test needs a descriptor limit of at least 2048 (the hard limit is {})",
        limit.rlim_max
    );
}

/// Under a low descriptor limit and a low task limit (a pids cgroup), with
/// every descriptor taken by clients that hold their connection mid-header,
/// the server goes on: it backs off on EMFILE rather than exit or go deaf,
/// and answers again once the connections are released.
#[test]
#[cfg_attr(
    any(casterpak_not_root, casterpak_no_pids_cgroup),
    ignore = "needs root (a pids cgroup); needs the cgroup v1 pids controller (/sys/fs/cgroup/pids)"
)]
fn low_descriptor_and_task_limits_do_not_take_the_server_down() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("media");
    std::fs::create_dir(&root).unwrap();
    std::fs::copy(fixture("h264-aac-bframes.mp4"), root.join("film.mp4")).unwrap();
    let cgroup = PidsCgroup::create(16);
    let join = format!("echo $$ > {}/cgroup.procs && exec \"$@\"", cgroup.path);
    let mut server = Server::start_wrapped(
        &["sh", "-c", &join, "sh", "prlimit", "--nofile=96:96", "--"],
        &root,
        &dir.path().join("cache"),
        &["--workers", "4"],
        // No cap of its own: the descriptor limit is what it meets.
        &[
            ("CASTERPAK_SERVER_MAX_CONNECTIONS", "10000"),
            ("CASTERPAK_SERVER_HEADER_TIMEOUT", "60"),
        ],
    );
    let addr: SocketAddr = server.addr.parse().unwrap();
    assert_eq!(server.get(SEGMENT).status, 200);
    // Hold more connections than there are descriptors, each mid-header
    // (not idle, so the server cannot close them to make room).
    let held: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /i/film.mp4/master.m3u8 HTTP/1.1\r\n")
                .unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    assert!(server.is_running(), "the server survives running out");
    drop(held);
    // Once they are gone it answers again (retrying while it backs off).
    let deadline = Instant::now() + Duration::from_secs(30);
    let answered = loop {
        let reply = std::panic::catch_unwind(|| server.get(SEGMENT));
        match reply {
            Ok(r) if r.status == 200 => break true,
            _ if Instant::now() > deadline => break false,
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    assert!(
        answered,
        "answering again after the connections were released"
    );
    assert!(server.is_running());
    let peak = std::fs::read_to_string(format!("{}/pids.peak", cgroup.path))
        .or_else(|_| std::fs::read_to_string(format!("{}/pids.current", cgroup.path)))
        .unwrap();
    report(&format!(
        "low limits: answered again with 96 descriptors and {} of 16 tasks in use at most",
        peak.trim()
    ));
}

/// A cgroup (v1 `pids` controller) that limits the tasks of what is
/// started in it; removed when dropped.
struct PidsCgroup {
    path: String,
}

impl PidsCgroup {
    fn create(max: u32) -> PidsCgroup {
        let path = format!("/sys/fs/cgroup/pids/casterpak-test-{}", std::process::id());
        std::fs::create_dir(&path).unwrap_or_else(|e| {
            panic!("a pids cgroup is needed ({path}: {e}); run as root on cgroup v1 pids")
        });
        std::fs::write(format!("{path}/pids.max"), max.to_string()).unwrap();
        PidsCgroup { path }
    }
}

impl Drop for PidsCgroup {
    fn drop(&mut self) {
        // Its processes must be gone first (the server is dropped before).
        for _ in 0..50 {
            if std::fs::remove_dir(&self.path).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Serves `film.mp4` (and the big source when `big`) with `env`.
fn small_server(env: &[(&str, &str)], big: bool) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("media");
    std::fs::create_dir(&root).unwrap();
    std::fs::copy(fixture("h264-aac-bframes.mp4"), root.join("film.mp4")).unwrap();
    if big {
        make_big_source(&root.join("big.mp4"), 2);
    }
    let server = Server::start_with_env(&root, &dir.path().join("cache"), &[], env);
    (dir, server)
}

/// Sockets the server process has open (its listener included).
fn open_sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
                .filter(|target| target.to_string_lossy().starts_with("socket:"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn the_connection_cap_holds_under_busy_keep_alive_clients() {
    const CAP: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("media");
    std::fs::create_dir(&root).unwrap();
    std::fs::copy(fixture("h264-aac-bframes.mp4"), root.join("film.mp4")).unwrap();
    let log = dir.path().join("serve.log");
    let server = Server::start_logging(
        &root,
        &dir.path().join("cache"),
        &[
            ("RUST_LOG", "casterpak=debug"),
            ("CASTERPAK_SERVER_MAX_CONNECTIONS", "10"),
        ],
        &log,
    );
    let addr: SocketAddr = server.addr.parse().unwrap();
    // The listener, and the socket pair of the signal handler.
    let idle_sockets = open_sockets(server.pid());
    let stop = AtomicBool::new(false);
    let peak = AtomicU64::new(0);
    let answered: Vec<u64> = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(open_sockets(server.pid()) as u64, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let clients: Vec<_> = (0..4 * CAP)
            .map(|_| scope.spawn(|| keep_alive_client(addr, &stop)))
            .collect();
        std::thread::sleep(Duration::from_secs(3));
        stop.store(true, Ordering::Relaxed);
        clients.into_iter().map(|c| c.join().unwrap()).collect()
    });
    drop(server);
    // The server's own count, at every accept.
    let counts: Vec<usize> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter_map(|l| {
            l.split(": accepted, ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    let most = counts.iter().copied().max().unwrap_or(0);
    // The descriptors the kernel lists for it: a scan of /proc is not one
    // instant, so one closing and its successor may both be seen.
    let sockets = peak.load(Ordering::Relaxed) as usize;
    report(&format!(
        "connection cap {CAP}: {} accepts, at most {most} open by the server's count, \
         {sockets} sockets (with the {idle_sockets} of an idle server) seen at once; {} requests answered",
        counts.len(),
        answered.iter().sum::<u64>()
    ));
    assert!(counts.len() > CAP, "connections were made room for");
    assert!(most <= CAP, "at most {CAP} open: {most}");
    assert!(
        sockets <= CAP + idle_sockets + 2,
        "{sockets} sockets, {idle_sockets} before any connection"
    );
    assert!(answered.iter().sum::<u64>() > 0);
}

/// Requests on a keep-alive connection as fast as answered, reconnecting
/// when the server closes it (as browsers and CDNs do); returns how many
/// were answered.
fn keep_alive_client(addr: SocketAddr, stop: &AtomicBool) -> u64 {
    let mut answered = 0;
    while !stop.load(Ordering::Relaxed) {
        let Ok(stream) = TcpStream::connect(addr) else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        while !stop.load(Ordering::Relaxed) {
            send(&mut writer, "GET", PLAYLIST, &[], false);
            let mut line = String::new();
            match std::io::BufRead::read_line(&mut reader, &mut line) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
            let rest = line.into_bytes();
            let reply = read_reply(&mut std::io::Cursor::new(rest).chain(&mut reader), false);
            assert_eq!(reply.status, 200);
            answered += 1;
        }
    }
    answered
}

#[test]
fn clients_stuck_in_their_header_cannot_shut_out_a_new_one() {
    // A long header deadline, so that only being made room for lets the
    // new client in.
    let (_dir, server) = small_server(
        &[
            ("CASTERPAK_SERVER_MAX_CONNECTIONS", "50"),
            ("CASTERPAK_SERVER_HEADER_TIMEOUT", "120"),
        ],
        false,
    );
    let addr: SocketAddr = server.addr.parse().unwrap();
    let stuck: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"G").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    // Answered (the read timeout of the client is 60 s, the deadline 120 s).
    let reply = server.get(SEGMENT);
    assert_eq!(reply.status, 200);
    drop(stuck);
}

#[test]
fn a_partial_request_behind_a_whole_one_keeps_the_header_deadline() {
    let (_dir, server) = small_server(
        &[
            ("CASTERPAK_SERVER_HEADER_TIMEOUT", "2"),
            ("CASTERPAK_SERVER_KEEPALIVE_TIMEOUT", "120"),
        ],
        false,
    );
    let mut stream = TcpStream::connect(&server.addr).unwrap();
    let whole = format!("GET {PLAYLIST} HTTP/1.1\r\nHost: x\r\n\r\n");
    stream
        .write_all(format!("{whole}GET {PLAYLIST} HTTP/1.1\r\nHost:").as_bytes())
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    assert_eq!(read_reply(&mut reader, false).status, 200);
    // The rest never comes: the connection is closed by the header
    // deadline (2 s), long before the keep-alive one (120 s) would.
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut rest = Vec::new();
    let end = reader.read_to_end(&mut rest);
    assert!(
        end.is_ok() || end.is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "closed, not timed out on our side"
    );
}

/// A client that goes away before its answer is ready is logged with
/// 499 (nginx's "client closed request"), and the server goes on.
#[test]
#[cfg_attr(casterpak_no_ffmpeg, ignore = "needs ffmpeg (to make a 4 MB segment)")]
fn a_client_gone_before_its_answer_is_logged_499() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("media");
    std::fs::create_dir(&root).unwrap();
    make_big_source(&root.join("big.mp4"), 2);
    // Copies, each cold: an attempt where the answer (its source parsed,
    // then muxed, some 6 ms) beat the client's leaving (a loaded machine
    // can stretch the 2 ms below), logged `200 0/<len> ... cut`, or where
    // the request was dropped unread, is made again with the next.
    const ATTEMPTS: usize = 8;
    for n in 0..ATTEMPTS {
        std::fs::copy(root.join("big.mp4"), root.join(format!("big{n}.mp4"))).unwrap();
    }
    let log = dir.path().join("serve.log");
    let server = Server::start_logging(
        &root,
        &dir.path().join("cache"),
        &[("RUST_LOG", "access=info")],
        &log,
    );
    let mut gone_first = None;
    for n in 0..ATTEMPTS {
        let target = BIG_SEGMENT.replace("big.mp4", &format!("big{n}.mp4"));
        let mut stream = TcpStream::connect(&server.addr).unwrap();
        send(&mut stream, "GET", &target, &[], false);
        // Long enough for the server to take the request (a closed socket
        // with a request behind it may be dropped unread), not to answer it.
        std::thread::sleep(Duration::from_millis(2));
        stream.shutdown(std::net::Shutdown::Both).unwrap();
        drop(stream);
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(server.get(&target).status, 200, "still answering");
        let logged = std::fs::read_to_string(&log).unwrap();
        let first = logged
            .lines()
            .find(|l| l.contains(&format!("\"GET {target}\" ")))
            .unwrap_or_else(|| panic!("{target} not logged: {logged}"))
            .to_string();
        if first.contains(&format!("\"GET {target}\" 499 0/0")) {
            assert!(first.ends_with(" cut"), "{first}");
            gone_first = Some(n);
            break;
        }
        // Answered before the client left: the next attempt.
    }
    assert!(
        gone_first.is_some(),
        "no attempt of {ATTEMPTS} saw the client leave first"
    );
}

#[test]
#[cfg_attr(casterpak_no_ffmpeg, ignore = "needs ffmpeg (to make a 4 MB segment)")]
fn a_slow_but_steady_reader_is_not_cut_off() {
    let (_dir, server) = small_server(&[("CASTERPAK_SERVER_SEND_TIMEOUT", "2")], true);
    let whole = server.get(BIG_SEGMENT).body;
    let mut stream = TcpStream::connect(&server.addr).unwrap();
    send(&mut stream, "GET", BIG_SEGMENT, &[], true);
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // About 64 kB/s for 6 s, three times the send timeout: the kernel's
    // send buffer drains too slowly to report room, but it drains.
    let mut received = Vec::new();
    let mut buf = [0u8; 8 << 10];
    for _ in 0..48 {
        let n = stream.read(&mut buf).expect("not cut off");
        assert!(n > 0, "not closed");
        received.extend_from_slice(&buf[..n]);
        std::thread::sleep(Duration::from_millis(125));
    }
    stream.read_to_end(&mut received).expect("the rest");
    let body = received
        .split_at(received.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4)
        .1;
    assert_eq!(body, &whole[..], "the whole segment");
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_keepalive_timeout() {
    let (_dir, server) = small_server(&[("CASTERPAK_SERVER_KEEPALIVE_TIMEOUT", "1")], false);
    let stream = TcpStream::connect(&server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    send(&mut writer, "GET", PLAYLIST, &[], false);
    assert_eq!(read_reply(&mut reader, false).status, 200);
    // Nothing more is asked: the server closes (the client's read timeout
    // of 30 s only guards against a hang).
    let mut rest = Vec::new();
    assert_eq!(
        reader
            .read_to_end(&mut rest)
            .expect("closed, not timed out"),
        0
    );
}
