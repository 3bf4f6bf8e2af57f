//! The child processes of a real-mode run, and making sure none outlives it.
//!
//! Every child is `meshrig` itself (`control`, `proxy`, `app`) started with
//! `--exit-on-stdin-eof` and a piped stdin that only this process holds: when the
//! runner exits for any reason — success, error, Ctrl-C, a panic, or SIGKILL — the
//! kernel closes the pipe and the child shuts itself down. On the normal paths the
//! runner also kills and reaps every child itself ([`Procs`]'s `Drop`).

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How a child is started, kept so it can be started again after a kill.
#[derive(Debug, Clone)]
pub struct Spec {
    pub name: String,
    pub args: Vec<String>,
}

#[derive(Debug)]
struct Running {
    child: Child,
    /// Held open: dropping it tells the child to exit.
    stdin: Option<ChildStdin>,
}

/// The running children, by name.
#[derive(Debug)]
pub struct Procs {
    exe: PathBuf,
    logs: PathBuf,
    specs: BTreeMap<String, Spec>,
    running: BTreeMap<String, Running>,
}

impl Procs {
    pub fn new(exe: PathBuf, logs: PathBuf) -> Self {
        Procs {
            exe,
            logs,
            specs: BTreeMap::new(),
            running: BTreeMap::new(),
        }
    }

    /// Where child `name`'s stderr goes.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.logs.join(format!("{name}.stderr"))
    }

    /// Starts `spec` and waits (up to `timeout`) for its `ready` line on stdout.
    pub fn start(&mut self, spec: Spec, timeout: Duration) -> anyhow::Result<()> {
        let name = spec.name.clone();
        self.specs.insert(name.clone(), spec);
        self.spawn(&name, timeout)
    }

    /// Starts every spec at once, then waits for each to be ready.
    pub fn start_all(&mut self, specs: Vec<Spec>, timeout: Duration) -> anyhow::Result<()> {
        let mut waiting = Vec::new();
        for spec in specs {
            let name = spec.name.clone();
            self.specs.insert(name.clone(), spec);
            waiting.push((name.clone(), self.launch(&name)?));
        }
        let deadline = Instant::now() + timeout;
        for (name, ready) in waiting {
            self.await_ready(&name, &ready, deadline)?;
        }
        Ok(())
    }

    /// Starts `name` again with its original arguments (after [`Procs::kill`]).
    pub fn restart(&mut self, name: &str, timeout: Duration) -> anyhow::Result<()> {
        self.kill(name);
        self.spawn(name, timeout)
    }

    /// Kills `name` and starts it again without waiting: the receiver gets its stdout
    /// lines (see [`wait_ready`]), so a slow start does not hold the caller.
    pub fn relaunch(&mut self, name: &str) -> anyhow::Result<mpsc::Receiver<String>> {
        self.kill(name);
        self.launch(name)
    }

    fn spawn(&mut self, name: &str, timeout: Duration) -> anyhow::Result<()> {
        let ready = self.launch(name)?;
        self.await_ready(name, &ready, Instant::now() + timeout)
    }

    fn launch(&mut self, name: &str) -> anyhow::Result<mpsc::Receiver<String>> {
        let spec = self.specs.get(name).expect("specs are registered first");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(name))?;
        // Its own process group: a Ctrl-C at the terminal reaches only the runner,
        // which then stops the children in order and still writes the result.
        let mut child = Command::new(&self.exe)
            .args(&spec.args)
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {name} ({}): {e}", self.exe.display()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Read stdout to the end so the child never blocks on a full pipe.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        self.running
            .insert(name.to_owned(), Running { child, stdin });
        Ok(rx)
    }

    fn await_ready(
        &mut self,
        name: &str,
        ready: &mpsc::Receiver<String>,
        deadline: Instant,
    ) -> anyhow::Result<()> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match ready.recv_timeout(left.max(Duration::from_millis(1))) {
                Ok(line) if line.trim() == "ready" => return Ok(()),
                Ok(_) => {}
                Err(_) => {
                    let tail = tail(&self.log_path(name), 5);
                    let exited = self
                        .running
                        .get_mut(name)
                        .and_then(|r| r.child.try_wait().ok().flatten());
                    let why = match exited {
                        Some(status) => format!("exited ({status})"),
                        None => "was not ready in time".to_owned(),
                    };
                    anyhow::bail!("{name} {why}; its stderr ends with:\n{tail}");
                }
            }
        }
    }

    /// SIGKILLs `name` and reaps it. Idempotent.
    pub fn kill(&mut self, name: &str) {
        if let Some(mut r) = self.running.remove(name) {
            let _ = r.child.kill();
            let _ = r.child.wait();
            drop(r.stdin.take());
        }
    }

    /// Stops `name` gracefully: closes its stdin (it flushes and exits), waits up to
    /// `grace`, then kills it.
    pub fn stop(&mut self, name: &str, grace: Duration) {
        let Some(mut r) = self.running.remove(name) else {
            return;
        };
        drop(r.stdin.take());
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if matches!(r.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = r.child.kill();
        let _ = r.child.wait();
    }

    /// Stops every child gracefully, all at once.
    pub fn stop_all(&mut self, grace: Duration) {
        for r in self.running.values_mut() {
            drop(r.stdin.take());
        }
        let names: Vec<String> = self.running.keys().cloned().collect();
        for name in names {
            self.stop(&name, grace);
        }
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        let names: Vec<String> = self.running.keys().cloned().collect();
        for name in names {
            self.kill(&name);
        }
    }
}

/// Waits until a child started by [`Procs::relaunch`] says `ready`, up to `deadline`.
pub fn wait_ready(
    name: &str,
    ready: &mpsc::Receiver<String>,
    stderr: &Path,
    deadline: Instant,
) -> anyhow::Result<()> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match ready.recv_timeout(left.max(Duration::from_millis(1))) {
            Ok(line) if line.trim() == "ready" => return Ok(()),
            Ok(_) => {}
            Err(_) => anyhow::bail!(
                "{name} was not ready in time (or exited); its stderr ends with:\n{}",
                tail(stderr, 5)
            ),
        }
    }
}

/// The last `n` lines of a file, indented.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    if lines.is_empty() {
        return "    (nothing)".to_owned();
    }
    lines[start..]
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
