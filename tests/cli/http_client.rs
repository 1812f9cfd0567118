//! A minimal HTTP/1.1 client and a `casterpak serve` process for tests:
//! raw enough to see exactly what the server sends (Content-Length, no
//! chunking, status lines) and to send what browsers and CDNs send.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Server {
    child: Child,
    pub addr: String,
}

impl Server {
    /// Starts `casterpak serve` on a free port; `extra` are more arguments.
    pub fn start(root: &Path, cache: &Path, extra: &[&str]) -> Server {
        Self::start_with_env(root, cache, extra, &[])
    }

    pub fn start_with_env(
        root: &Path,
        cache: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        Self::spawn(&[], root, cache, extra, env, Stdio::inherit())
    }

    /// Starts a server through `wrapper` (a program and its arguments, to
    /// which the server's command line is appended: `prlimit`, `sh -c`).
    pub fn start_wrapped(
        wrapper: &[&str],
        root: &Path,
        cache: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        Self::spawn(wrapper, root, cache, extra, env, Stdio::inherit())
    }

    /// Starts a server whose log goes to the file `log` (set its level
    /// with `RUST_LOG` in `env`).
    pub fn start_logging(root: &Path, cache: &Path, env: &[(&str, &str)], log: &Path) -> Server {
        let file = std::fs::File::create(log).expect("a log file");
        Self::spawn(&[], root, cache, &[], env, Stdio::from(file))
    }

    /// As [`Server::start_logging`], with more arguments.
    pub fn start_logging_with(
        root: &Path,
        cache: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
        log: &Path,
    ) -> Server {
        let file = std::fs::File::create(log).expect("a log file");
        Self::spawn(&[], root, cache, extra, env, Stdio::from(file))
    }

    fn spawn(
        wrapper: &[&str],
        root: &Path,
        cache: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
        stderr: Stdio,
    ) -> Server {
        let binary = env!("CARGO_BIN_EXE_casterpak");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        let mut child = command
            .arg("serve")
            .arg("--root")
            .arg(root)
            .arg("--cache-dir")
            .arg(cache)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("casterpak serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        Server { child, addr }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running (it has not exited or died).
    pub fn is_running(&mut self) -> bool {
        self.child
            .try_wait()
            .expect("waiting on the server")
            .is_none()
    }

    pub fn get(&self, path: &str) -> Reply {
        request(&self.addr, "GET", path, &[])
    }
}

impl Server {
    /// Sends SIGTERM and waits, at most `limit`, for the process to exit:
    /// its exit status, or `None` if it is still running.
    pub fn terminate(&mut self, limit: std::time::Duration) -> Option<std::process::ExitStatus> {
        // SAFETY: kill takes a pid and a signal number.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = std::time::Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                _ => return None,
            }
        }
    }
}

impl Drop for Server {
    /// Stops it as an operator does (SIGTERM: it stores what it holds in
    /// memory, then exits); SIGKILL if it has not exited within 10 s.
    fn drop(&mut self) {
        if self.terminate(std::time::Duration::from_secs(10)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request on a new connection.
pub fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    send(&mut stream, method, path, headers, true);
    read_reply(&mut BufReader::new(stream), method == "HEAD")
}

pub fn send(
    stream: &mut TcpStream,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    close: bool,
) {
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    if close {
        text.push_str("Connection: close\r\n");
    }
    text.push_str("\r\n");
    stream.write_all(text.as_bytes()).unwrap();
}

/// Reads one response; the body must be delimited by Content-Length.
pub fn read_reply(reader: &mut impl BufRead, head: bool) -> Reply {
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line {status_line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').expect("header line");
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let mut reply = Reply {
        status,
        headers,
        body: Vec::new(),
    };
    assert!(
        reply.header("Transfer-Encoding").is_none(),
        "chunked body: {reply:?}"
    );
    // 1xx, 204 and 304 have no body (RFC 9110 6.4.1), whatever a
    // Content-Length says; every other response must have one.
    if status == 304 || status == 204 {
        return reply;
    }
    let len: usize = reply
        .header("Content-Length")
        .unwrap_or_else(|| panic!("no Content-Length: {:?}", reply.headers))
        .parse()
        .unwrap();
    if !head {
        reply.body = vec![0; len];
        reader.read_exact(&mut reply.body).unwrap();
    }
    reply
}
