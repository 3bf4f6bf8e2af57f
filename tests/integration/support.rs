//! Helpers shared by the integration tests: start meshrig servers on 127.0.0.1:0 and
//! find their address, run the binary with a time limit.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Path of the binary under test.
pub fn meshrig() -> Command {
    Command::new(env!("CARGO_BIN_EXE_meshrig"))
}

/// A server child process, killed when dropped so no test leaves one behind.
#[derive(Debug)]
pub struct Server {
    pub addr: SocketAddr,
    pub child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

/// Starts `meshrig echo --addr 127.0.0.1:0 EXTRA...` and reads the bound address from
/// its first stdout line (`listening on ADDR`).
pub fn spawn_echo(extra: &[&str]) -> Server {
    let mut child = meshrig()
        .args(["echo", "--addr", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn meshrig echo");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read first line");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line from meshrig echo: {line:?}"))
        .parse()
        .expect("address on the first line");
    Server { addr, child }
}

/// Runs the binary to completion, failing the test if it takes longer than `limit`.
pub fn run_with_limit(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn meshrig");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("poll child").is_some() {
            return child.wait_with_output().expect("collect output");
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect output");
            panic!(
                "meshrig did not finish within {limit:?}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
