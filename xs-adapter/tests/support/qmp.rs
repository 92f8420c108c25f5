//! A fake QEMU QMP responder, just enough for libxl 4.17's `libxl_retrieve_domain_configuration`.
//!
//! For an HVM guest whose `/libxl/<D>/dm-version` is `qemu_xen`, libxl connects to
//! `/var/run/xen/qmp-libxl-<D>` (redirected by the shim to `$XLSHIM_RUNDIR`) and asks QEMU which
//! vCPUs are online (spec §1 step 5). The wire protocol, as libxl's `libxl__ev_qmp` speaks it:
//!
//! 1. the server sends a greeting, `{"QMP": {"version": {"qemu": {...}}, ...}}`;
//! 2. the client sends `{"execute":"qmp_capabilities","id":N}` and expects `{"return": {}, "id": N}`;
//! 3. the client sends `query-cpus-fast`; the reply's `return` is an array of objects whose
//!    `cpu-index` members are the online vCPUs. On an error of class `CommandNotFound` (QEMU older
//!    than 2.12) libxl resends the query as `query-cpus`, whose objects carry `CPU` instead.
//!
//! Every message is one JSON object followed by `\r\n`; replies must echo the request's integer
//! `id`, or libxl drops the connection as a protocol error.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Which vCPU query the fake QEMU understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QmpDialect {
    /// QEMU ≥ 2.12 without the removed `query-cpus` (QEMU ≥ 6.0): only `query-cpus-fast`.
    #[default]
    CpusFast,
    /// QEMU < 2.12: `query-cpus-fast` fails with `CommandNotFound`, `query-cpus` answers. Exercises
    /// libxl's fallback path.
    LegacyQueryCpus,
}

/// A running responder on one Unix socket. It serves connections one after another until
/// dropped; dropping stops the thread and removes the socket.
pub struct FakeQemu {
    socket: PathBuf,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeQemu {
    /// Listens on `socket` and answers vCPU queries with `online_cpus` as the `cpu-index` list.
    pub fn start(socket: &Path, online_cpus: Vec<u32>, dialect: QmpDialect) -> FakeQemu {
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket)
            .unwrap_or_else(|e| panic!("cannot listen on the fake QMP socket {}: {e}", socket.display()));
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, log) = (stop.clone(), log.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    match conn {
                        Ok(stream) => {
                            if let Err(e) = serve(stream, &online_cpus, dialect, &log) {
                                log.lock().unwrap().push(format!("connection error: {e}"));
                            }
                        }
                        Err(e) => log.lock().unwrap().push(format!("accept error: {e}")),
                    }
                }
            })
        };
        FakeQemu { socket: socket.to_path_buf(), stop, log, thread: Some(thread) }
    }

    /// The commands received so far, in order (`qmp_capabilities`, `query-cpus-fast`, …), plus
    /// any connection errors.
    pub fn commands(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for FakeQemu {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept with a connection of our own; the loop then sees `stop`.
        let _ = UnixStream::connect(&self.socket);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// The greeting of a QEMU 7.2 (Debian 12's qemu-system-x86).
fn greeting() -> Value {
    json!({"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7"}, "capabilities": ["oob"]}})
}

fn command_not_found(command: &str, id: &Value) -> Value {
    json!({"error": {"class": "CommandNotFound", "desc": format!("The command {command} has not been found")}, "id": id})
}

/// The reply to one request, by QEMU's rules for the commands libxl's retrieve sends.
fn reply(request: &Value, online_cpus: &[u32], dialect: QmpDialect) -> Value {
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let command = request.get("execute").and_then(Value::as_str).unwrap_or("");
    let cpus = |key: &str| -> Value { Value::Array(online_cpus.iter().map(|&i| cpu_entry(key, i)).collect()) };
    match (command, dialect) {
        ("qmp_capabilities", _) => json!({"return": {}, "id": id}),
        ("query-cpus-fast", QmpDialect::CpusFast) => json!({"return": cpus("cpu-index"), "id": id}),
        ("query-cpus", QmpDialect::LegacyQueryCpus) => json!({"return": cpus("CPU"), "id": id}),
        _ => command_not_found(command, &id),
    }
}

/// One vCPU as QEMU describes it; libxl reads only the index member.
fn cpu_entry(index_key: &str, index: u32) -> Value {
    let mut cpu = serde_json::Map::new();
    cpu.insert(index_key.to_string(), json!(index));
    cpu.insert("qom-path".into(), json!(format!("/machine/unattached/device[{index}]")));
    cpu.insert("thread-id".into(), json!(4000 + index));
    cpu.insert("target".into(), json!("x86_64"));
    Value::Object(cpu)
}

fn send(stream: &mut UnixStream, message: &Value) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(message).expect("serialise QMP message");
    line.extend_from_slice(b"\r\n");
    stream.write_all(&line)
}

fn serve(
    mut stream: UnixStream,
    online_cpus: &[u32],
    dialect: QmpDialect,
    log: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    send(&mut stream, &greeting())?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        let request: Value = match serde_json::from_str(text.trim_end()) {
            Ok(v) => v,
            Err(e) => {
                log.lock().unwrap().push(format!("unparsable request {text:?}: {e}"));
                let error = json!({"error": {"class": "GenericError", "desc": "JSON parse error"}});
                send(&mut stream, &error)?;
                continue;
            }
        };
        let command = request.get("execute").and_then(Value::as_str).unwrap_or("<none>").to_string();
        log.lock().unwrap().push(command);
        send(&mut stream, &reply(&request, online_cpus, dialect))?;
    }
}
