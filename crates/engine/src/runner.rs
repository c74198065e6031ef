//! The task runner: the only code in Agent OS that starts processes.
//!
//! A task starts in its project's root, in a new process group, with a scrubbed environment
//! (PATH, HOME, LANG, TZ and the `AGENT_OS_*` variables the caller passes) and its input JSON
//! on stdin. Output is streamed line by line to a sink as it arrives. On timeout or cancel the
//! whole group gets SIGTERM, then SIGKILL after a grace period; when the task's main process
//! exits, anything it left running in its group is killed too, so nothing is orphaned.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, watch};

use agent_os_core::manifest::Command;

use crate::process::{SIGKILL, SIGTERM, group_alive, process_start_time, signal_group};

/// Variables of Agent OS's own environment a task may see. Nothing else passes.
pub const PASSED_THROUGH: [&str; 4] = ["PATH", "HOME", "LANG", "TZ"];

/// Longest line kept whole; longer lines are split.
const MAX_LINE: usize = 16 * 1024;

/// The scrubbed base environment: [`PASSED_THROUGH`] from this process, PATH defaulted.
pub fn base_env() -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> =
        PASSED_THROUGH.iter().filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v))).collect();
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()));
    }
    env
}

/// Which stream a line came from (core's spelling, stored with each log chunk).
pub use agent_os_core::run::LogStream as Stream;

/// Where output lines go as they arrive.
pub type LogSink = mpsc::UnboundedSender<(Stream, String)>;

/// What to run.
pub struct ProcessSpec<'a> {
    pub root: &'a Path,
    pub command: &'a Command,
    pub env: Vec<(String, String)>,
    pub stdin: Vec<u8>,
    pub timeout: Duration,
    pub kill_grace: Duration,
}

/// How the process ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    TimedOut,
    Cancelled,
    /// It could not be started (missing program, bad directory, …).
    SpawnFailed(String),
}

impl Exit {
    /// A reason in words for a failed exit.
    pub fn describe(&self, timeout: Duration) -> String {
        match self {
            Exit::Code(0) => "succeeded".into(),
            Exit::Code(126) => "exit status 126 (the program is not executable)".into(),
            Exit::Code(127) => "exit status 127 (command not found)".into(),
            Exit::Code(c) => format!("exit status {c}"),
            Exit::Signal(s) => format!("killed by signal {s}"),
            Exit::TimedOut => format!("timed out after {}", agent_os_core::format_duration(timeout)),
            Exit::Cancelled => "cancelled".into(),
            Exit::SpawnFailed(why) => why.clone(),
        }
    }
}

/// The absolute path of `program` as the task would find it: relative to the project root when
/// it contains a `/`, else the first executable file of that name on the task's PATH. Resolving
/// it here (rather than letting the child search PATH) lets the standard library start the task
/// with posix_spawn (vfork) instead of fork, which is several times cheaper for a server.
pub fn resolve_program(program: &str, root: &Path, env: &[(String, String)]) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if program.contains('/') {
        let p = root.join(program);
        return executable(&p).then_some(p);
    }
    let path = env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.as_str()).unwrap_or("");
    path.split(':').filter(|d| !d.is_empty()).map(|d| Path::new(d).join(program)).find(|p| executable(p)).map(|p| {
        // A PATH entry may itself be relative; anchor it at the project root like a shell would.
        if p.is_absolute() { p } else { root.join(p) }
    })
}

fn build(spec: &ProcessSpec<'_>) -> Result<tokio::process::Command, String> {
    let mut cmd = match spec.command {
        Command::Shell(line) => {
            let mut c = tokio::process::Command::new("/bin/sh");
            c.arg("-c").arg(line);
            c
        }
        Command::Argv(argv) => {
            let program = resolve_program(&argv[0], spec.root, &spec.env).ok_or_else(|| {
                if argv[0].contains('/') && spec.root.join(&argv[0]).is_file() {
                    format!("{:?} is not executable; make it so (chmod +x) or run it through its interpreter", argv[0])
                } else {
                    format!("program not found: {:?} (looked in the project directory and PATH)", argv[0])
                }
            })?;
            let mut c = tokio::process::Command::new(program);
            c.args(&argv[1..]);
            c
        }
    };
    cmd.current_dir(spec.root)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    Ok(cmd)
}

fn spawn_error(spec: &ProcessSpec<'_>, e: &std::io::Error) -> String {
    let program = match spec.command {
        Command::Shell(_) => "/bin/sh".to_string(),
        Command::Argv(argv) => argv[0].clone(),
    };
    match e.kind() {
        std::io::ErrorKind::NotFound => {
            format!("program not found: {program:?} (looked in the project directory and PATH)")
        }
        std::io::ErrorKind::PermissionDenied => format!("permission denied starting {program:?}; is it executable?"),
        _ => format!("could not start {program:?}: {e}"),
    }
}

async fn pump(stream: impl AsyncRead + Unpin, which: Stream, sink: LogSink) {
    let mut reader = BufReader::with_capacity(8192, stream);
    let mut buf = Vec::with_capacity(256);
    loop {
        buf.clear();
        // Read a line, but never more than MAX_LINE bytes of it at once.
        let mut limited = (&mut reader).take(MAX_LINE as u64);
        match limited.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf).into_owned();
                if sink.send((which, line)).is_err() {
                    break;
                }
            }
        }
    }
}

use tokio::io::AsyncReadExt as _;

/// Runs a process to completion. `on_spawn` receives the pid (also the process group id) and
/// its start time as soon as it exists, so a crash can be cleaned up later.
pub async fn run_process(
    spec: ProcessSpec<'_>,
    sink: LogSink,
    mut cancel: watch::Receiver<bool>,
    on_spawn: impl AsyncFnOnce(i64, Option<i64>),
) -> Exit {
    let mut child = match build(&spec).map(|mut c| c.spawn()) {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Exit::SpawnFailed(spawn_error(&spec, &e)),
        Err(why) => return Exit::SpawnFailed(why),
    };
    let pid = child.id().map(i64::from).unwrap_or(0);
    on_spawn(pid, process_start_time(pid)).await;

    if let Some(mut stdin) = child.stdin.take() {
        let input = spec.stdin;
        // A task that never reads stdin must not block us: write in the background.
        tokio::spawn(async move {
            let _ = stdin.write_all(&input).await;
            let _ = stdin.shutdown().await;
        });
    }
    let out = child.stdout.take().map(|s| tokio::spawn(pump(s, Stream::Stdout, sink.clone())));
    let err = child.stderr.take().map(|s| tokio::spawn(pump(s, Stream::Stderr, sink.clone())));

    let timeout = tokio::time::sleep(spec.timeout);
    tokio::pin!(timeout);
    let exit = tokio::select! {
        status = child.wait() => match status {
            Ok(s) => exit_of(s),
            Err(e) => Exit::SpawnFailed(format!("lost track of the task process: {e}")),
        },
        _ = &mut timeout => {
            let _ = sink.send((Stream::System, format!("timed out after {}; sending SIGTERM to the task's process group\n", agent_os_core::format_duration(spec.timeout))));
            terminate(&mut child, pid, spec.kill_grace, &sink).await;
            Exit::TimedOut
        }
        _ = async { let _ = cancel.wait_for(|c| *c).await; } => {
            let _ = sink.send((Stream::System, "cancel requested; sending SIGTERM to the task's process group\n".into()));
            terminate(&mut child, pid, spec.kill_grace, &sink).await;
            Exit::Cancelled
        }
    };
    // The main process is gone; whatever it left behind in its group goes too, and the run
    // ends only once it has.
    if group_alive(pid) {
        signal_group(pid, SIGKILL);
        // The kernel's reaping takes real time whatever tokio's clock says (tests hold it
        // still), so this waits on a blocking thread, by the wall clock.
        let _ = tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            while group_alive(pid) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        })
        .await;
    }
    for h in [out, err].into_iter().flatten() {
        if tokio::time::timeout(Duration::from_secs(5), h).await.is_err() {
            let _ = sink.send((Stream::System, "output still open 5s after exit; stopped reading\n".into()));
        }
    }
    exit
}

async fn terminate(child: &mut tokio::process::Child, pgid: i64, grace: Duration, sink: &LogSink) {
    signal_group(pgid, SIGTERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = sink.send((
            Stream::System,
            format!("still running {} after SIGTERM; sending SIGKILL\n", agent_os_core::format_duration(grace)),
        ));
        signal_group(pgid, SIGKILL);
        let _ = child.wait().await;
    }
}

fn exit_of(status: std::process::ExitStatus) -> Exit {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => Exit::Code(c),
        (None, Some(s)) => Exit::Signal(s),
        (None, None) => Exit::Code(-1),
    }
}

/// Output of a probe-style command: stdout (bounded) and the tail of stderr.
pub struct Captured {
    pub exit: Exit,
    pub stdout: String,
    pub stderr_tail: String,
}

/// Runs a command whose stdout is its answer (plugin probes), keeping at most `max_stdout`
/// bytes of stdout and the last 2 KiB of stderr.
pub async fn run_captured(spec: ProcessSpec<'_>, max_stdout: usize) -> Captured {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Stream, String)>();
    let (_keep, cancel) = watch::channel(false);
    let collect = tokio::spawn(async move {
        let mut stdout = String::new();
        let mut stderr = String::new();
        while let Some((stream, line)) = rx.recv().await {
            match stream {
                Stream::Stdout if stdout.len() + line.len() <= max_stdout => stdout.push_str(&line),
                Stream::Stdout => {}
                _ => {
                    stderr.push_str(&line);
                    if stderr.len() > 4096 {
                        let cut = stderr.len() - 2048;
                        let cut = (cut..stderr.len()).find(|i| stderr.is_char_boundary(*i)).unwrap_or(stderr.len());
                        stderr.drain(..cut);
                    }
                }
            }
        }
        (stdout, stderr)
    });
    let exit = run_process(spec, tx, cancel, async |_, _| {}).await;
    let (stdout, stderr_tail) = collect.await.unwrap_or_default();
    Captured { exit, stdout, stderr_tail }
}

/// What a local tool printed and how it ended ([`run_tool`]).
pub struct ToolOutput {
    /// The exit code; `None` when it was killed by a signal or for running too long.
    pub code: Option<i32>,
    /// At most the `max_stdout` bytes asked for.
    pub stdout: Vec<u8>,
}

/// Runs a short-lived, read-only local tool (`git check-ignore`, `git ls-files`) to completion,
/// without an async runtime: in `dir`, with the scrubbed environment plus `extra_env`, stdin
/// and stderr closed, keeping at most `max_stdout` bytes of stdout. It is killed after
/// `timeout`. Not for a project's tasks, which go through [`run_process`].
pub fn run_tool(
    program: &str,
    args: &[&std::ffi::OsStr],
    dir: &Path,
    extra_env: &[(String, String)],
    max_stdout: usize,
    timeout: Duration,
) -> Result<ToolOutput, String> {
    use std::io::Read as _;
    use std::os::unix::process::CommandExt as _;
    let mut env = base_env();
    env.extend(extra_env.iter().cloned());
    let path = resolve_program(program, dir, &env).ok_or_else(|| format!("{program:?} is not on the PATH"))?;
    let mut child = std::process::Command::new(path)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("could not start {program:?}: {e}"))?;
    let pid = i64::from(child.id());
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    // Read on a thread so a chatty tool never blocks on a full pipe while we wait for it.
    let reader = std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = max_stdout.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
        kept
    });
    let deadline = std::time::Instant::now() + timeout;
    let code = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status.code(),
            Ok(None) if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            Ok(None) | Err(_) => {
                // The whole group, so no helper it started keeps the pipe (and us) open.
                signal_group(pid, SIGKILL);
                let _ = child.wait();
                break None;
            }
        }
    };
    let stdout = reader.join().unwrap_or_default();
    Ok(ToolOutput { code, stdout })
}

/// Reads the outputs file a task wrote: `Ok(None)` when absent or empty, an error when it is
/// too large or not a JSON object. The file is removed afterwards.
pub fn read_outputs(path: &PathBuf, max_bytes: u64) -> Result<Option<serde_json::Value>, String> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(_) => return Ok(None),
    };
    let result = if meta.len() > max_bytes {
        Err(format!("the outputs file is {} bytes; the limit is {max_bytes}", meta.len()))
    } else {
        match std::fs::read(path) {
            Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(None),
            Ok(bytes) => match serde_json::from_slice::<serde_json::Value>(&bytes) {
                Ok(v @ serde_json::Value::Object(_)) => Ok(Some(v)),
                Ok(_) => Err("the outputs file must hold a JSON object".to_string()),
                Err(e) => Err(format!("the outputs file is not valid JSON: {e}")),
            },
            Err(e) => Err(format!("could not read the outputs file: {e}")),
        }
    };
    let _ = std::fs::remove_file(path);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_s_output_is_bounded_and_a_slow_tool_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let args = |line: &'static str| [std::ffi::OsStr::new("-c"), std::ffi::OsStr::new(line)];
        let out = run_tool("sh", &args("printf hello; exit 3"), dir.path(), &[], 3, Duration::from_secs(10)).unwrap();
        assert_eq!((out.code, out.stdout.as_slice()), (Some(3), &b"hel"[..]));
        let started = std::time::Instant::now();
        let out =
            run_tool("sh", &args("sleep 30 & sleep 30"), dir.path(), &[], 10, Duration::from_millis(200)).unwrap();
        assert_eq!(out.code, None);
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        assert!(run_tool("no-such-tool-here", &[], dir.path(), &[], 10, Duration::from_secs(1)).is_err());
    }

    async fn run(cmd: Command, timeout_ms: u64) -> (Exit, Vec<(Stream, String)>, i64) {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (_c, cancel) = watch::channel(false);
        let pid = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
        let p = pid.clone();
        let exit = run_process(
            ProcessSpec {
                root: dir.path(),
                command: &cmd,
                env: base_env(),
                stdin: b"{\"x\":1}".to_vec(),
                timeout: Duration::from_millis(timeout_ms),
                kill_grace: Duration::from_millis(300),
            },
            tx,
            cancel,
            async move |id, _| p.store(id, std::sync::atomic::Ordering::SeqCst),
        )
        .await;
        let mut lines = Vec::new();
        while let Ok(l) = rx.try_recv() {
            lines.push(l);
        }
        (exit, lines, pid.load(std::sync::atomic::Ordering::SeqCst))
    }

    #[tokio::test]
    async fn captures_lines_and_exit_codes() {
        let (exit, lines, _) = run(Command::Shell("cat; echo; echo oops >&2; exit 3".into()), 5_000).await;
        assert_eq!(exit, Exit::Code(3));
        assert!(lines.contains(&(Stream::Stdout, "{\"x\":1}\n".into())), "{lines:?}");
        assert!(lines.contains(&(Stream::Stderr, "oops\n".into())), "{lines:?}");
    }

    #[tokio::test]
    async fn missing_program_is_a_clear_failure() {
        let (exit, _, _) = run(Command::Argv(vec!["no-such-program-xyz".into()]), 5_000).await;
        match exit {
            Exit::SpawnFailed(why) => assert!(why.contains("program not found: \"no-such-program-xyz\""), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let (exit, lines, pid) = run(Command::Shell("sleep 30 & sleep 30; echo never".into()), 300).await;
        assert_eq!(exit, Exit::TimedOut);
        assert!(lines.iter().any(|(s, l)| *s == Stream::System && l.contains("timed out")));
        assert!(!group_alive(pid), "the background sleep must be gone too");
    }

    #[tokio::test]
    async fn leftovers_of_a_finished_task_are_killed() {
        let (exit, _, pid) = run(Command::Shell("sleep 30 > /dev/null 2>&1 & echo started".into()), 5_000).await;
        assert_eq!(exit, Exit::Code(0));
        assert!(!group_alive(pid));
    }

    #[test]
    fn programs_resolve_like_a_shell_would() {
        let dir = tempfile::tempdir().unwrap();
        let env = vec![("PATH".to_string(), "/nonexistent:/usr/bin:/bin".to_string())];
        let sh = resolve_program("sh", dir.path(), &env).unwrap();
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{sh:?}");
        assert_eq!(resolve_program("no-such-program-xyz", dir.path(), &env), None);
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        let script = dir.path().join("bin/run.sh");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        assert_eq!(resolve_program("bin/run.sh", dir.path(), &env), None, "not executable yet");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(resolve_program("bin/run.sh", dir.path(), &env), Some(script));
    }

    #[test]
    fn outputs_must_be_an_object() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("o.json");
        std::fs::write(&p, "{\"a\":1}").unwrap();
        assert_eq!(read_outputs(&p, 100).unwrap(), Some(serde_json::json!({"a":1})));
        assert!(!p.exists(), "read once, then removed");
        std::fs::write(&p, "[1]").unwrap();
        assert!(read_outputs(&p, 100).unwrap_err().contains("JSON object"));
        std::fs::write(&p, "x".repeat(200)).unwrap();
        assert!(read_outputs(&p, 100).unwrap_err().contains("limit"));
        assert_eq!(read_outputs(&p, 100).unwrap(), None);
    }
}
