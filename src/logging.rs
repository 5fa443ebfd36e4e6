//! Log output of the long-running commands (`serve`, `worker`): tracing's fmt
//! layer, human-readable or JSON, level from `RUST_LOG` (default `info`),
//! written to stderr through [`LineBuffer`].
//!
//! Every task writes an audit line. Written straight to stderr, each line was
//! a `write` system call on the request's thread; the benchmark showed the
//! audit line costing 10–18 % of serve's throughput that way. Lines now go
//! into a bounded buffer that a thread of its own writes out, many lines per
//! call. Nothing is dropped: when the buffer is full (stderr blocked), the
//! writers wait; [`LogGuard`] writes out what is left when the command ends.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `time LEVEL target: message key=value …`
    Human,
    /// One JSON object per line.
    Json,
}

/// Bytes waiting to be written at most; writers wait beyond it.
const BUFFER_LIMIT: usize = 1 << 20;

struct Pending {
    data: Vec<u8>,
    /// The drain thread is waiting for data (only then is it woken).
    drain_idle: bool,
    /// Writers waiting for room.
    blocked: usize,
    closed: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    data: Condvar,
    room: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Where log lines go: a buffer written out by a thread of its own.
#[derive(Clone)]
pub struct LineBuffer {
    shared: Arc<Shared>,
}

/// Writes out what is buffered and stops the drain thread when dropped.
pub struct LogGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for LogGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogGuard")
    }
}

impl LineBuffer {
    /// A buffer draining into `sink` on a thread of its own.
    pub fn new(mut sink: Box<dyn Write + Send>) -> std::io::Result<(LineBuffer, LogGuard)> {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                data: Vec::with_capacity(64 * 1024),
                drain_idle: false,
                blocked: 0,
                closed: false,
            }),
            data: Condvar::new(),
            room: Condvar::new(),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("hfconnect-log".into())
            .spawn(move || {
                let mut spare = Vec::with_capacity(64 * 1024);
                loop {
                    let mut p = s.lock();
                    while p.data.is_empty() && !p.closed {
                        p.drain_idle = true;
                        p = s.data.wait(p).unwrap_or_else(PoisonError::into_inner);
                    }
                    p.drain_idle = false;
                    if p.data.is_empty() {
                        break;
                    }
                    std::mem::swap(&mut p.data, &mut spare);
                    let wake = p.blocked > 0;
                    drop(p);
                    if wake {
                        s.room.notify_all();
                    }
                    // A failing stderr has nowhere to report to; the lines are gone either way.
                    let _ = sink.write_all(&spare);
                    let _ = sink.flush();
                    spare.clear();
                }
            })?;
        Ok((
            LineBuffer {
                shared: shared.clone(),
            },
            LogGuard {
                shared,
                thread: Some(thread),
            },
        ))
    }

    fn push(&self, line: &[u8]) {
        let s = &self.shared;
        let mut p = s.lock();
        while p.data.len() >= BUFFER_LIMIT && !p.closed {
            p.blocked += 1;
            p = s.room.wait(p).unwrap_or_else(PoisonError::into_inner);
            p.blocked -= 1;
        }
        if p.closed {
            // After the guard: write directly (late lines of a shutting-down process).
            drop(p);
            let _ = std::io::stderr().write_all(line);
            return;
        }
        p.data.extend_from_slice(line);
        let wake = p.drain_idle;
        p.drain_idle = false;
        drop(p);
        if wake {
            s.data.notify_one();
        }
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.data.notify_one();
        self.shared.room.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One event's writer: the fmt layer writes each formatted line in one call.
pub struct LineWriter(LineBuffer);

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LineBuffer {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter(self.clone())
    }
}

/// Install the global subscriber: `format`, level from `RUST_LOG` (default
/// `info`), to stderr through a [`LineBuffer`]. Keep the guard until the end.
pub fn init(format: LogFormat) -> Option<LogGuard> {
    crate::untrusted::set_json_logs(format == LogFormat::Json);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (buffer, guard) = LineBuffer::new(Box::new(std::io::stderr())).ok()?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(buffer);
    let installed = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    installed.ok().map(|()| guard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_from_many_threads_arrive_whole_and_none_is_lost() {
        let sink = Sink::default();
        let (buffer, guard) = LineBuffer::new(Box::new(sink.clone())).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let b = buffer.clone();
                std::thread::spawn(move || {
                    for i in 0..5_000 {
                        // Lines longer than the buffer's limit in all: writers wait, none is dropped.
                        let line = format!("thread {t} line {i} {}\n", "x".repeat(100));
                        LineWriter(b.clone()).write_all(line.as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(guard);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 20_000);
        for t in 0..4 {
            let mine: Vec<usize> = lines
                .iter()
                .filter(|l| l.starts_with(&format!("thread {t} ")))
                .map(|l| l.split(' ').nth(3).unwrap().parse().unwrap())
                .collect();
            assert_eq!(mine, (0..5_000).collect::<Vec<_>>(), "thread {t} in order");
        }
    }
}
