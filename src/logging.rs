//! Log output of the long-running commands (`serve`, `worker`): tracing's fmt
//! layer, human-readable or JSON, level from `RUST_LOG` (default `info`),
//! written to stderr through [`LineBuffer`].
//!
//! Every task writes an audit line. Written straight to stderr, each line was
//! a `write` system call on the request's thread; the benchmark showed the
//! audit line costing 10–18 % of serve's throughput that way. Lines now go
//! into a buffer written out in batches: by the writer that fills it past
//! [`WAKE_AT`], and otherwise every [`DRAIN_EVERY`] by a task on the
//! command's runtime ([`spawn_drain`]). Nothing is dropped and nothing waits
//! on another thread: a full buffer is written out by whoever filled it, and
//! [`LogGuard`] writes out what is left when the command ends. (A drain thread
//! of its own cost 2.5 MB of serve's idle memory: the allocator commits memory
//! for every thread that allocates.)

use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `time LEVEL target: message key=value …`
    Human,
    /// One JSON object per line.
    Json,
}

/// A writer writes the buffer out once this much is waiting.
const WAKE_AT: usize = 64 << 10;
/// Otherwise it is written out this often (how late a log line may appear).
const DRAIN_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

struct Out {
    sink: Box<dyn Write + Send>,
    /// The buffer written last, kept to swap in (no allocation per batch).
    spare: Vec<u8>,
}

struct Shared {
    pending: Mutex<Vec<u8>>,
    /// Held while a batch is written, so batches keep their order.
    out: Mutex<Out>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where log lines go: a buffer written out in batches.
#[derive(Clone)]
pub struct LineBuffer {
    shared: Arc<Shared>,
}

/// Writes out what is buffered when dropped.
pub struct LogGuard {
    buffer: LineBuffer,
}

impl std::fmt::Debug for LogGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogGuard")
    }
}

impl LineBuffer {
    /// A buffer writing into `sink`.
    pub fn new(sink: Box<dyn Write + Send>) -> (LineBuffer, LogGuard) {
        let buffer = LineBuffer {
            shared: Arc::new(Shared {
                pending: Mutex::new(Vec::new()),
                out: Mutex::new(Out {
                    sink,
                    spare: Vec::new(),
                }),
            }),
        };
        (buffer.clone(), LogGuard { buffer })
    }

    fn push(&self, line: &[u8]) {
        let full = {
            let mut p = lock(&self.shared.pending);
            p.extend_from_slice(line);
            p.len() >= WAKE_AT
        };
        if full {
            self.drain();
        }
    }

    /// Write out what is waiting.
    pub fn drain(&self) {
        let mut out = lock(&self.shared.out);
        let out = &mut *out;
        {
            let mut p = lock(&self.shared.pending);
            if p.is_empty() {
                return;
            }
            std::mem::swap(&mut *p, &mut out.spare);
        }
        // A failing stderr has nowhere to report to; the lines are gone either way.
        let _ = out.sink.write_all(&out.spare);
        let _ = out.sink.flush();
        out.spare.clear();
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.buffer.drain();
    }
}

/// The buffer of the installed subscriber, for [`spawn_drain`].
static INSTALLED: std::sync::OnceLock<LineBuffer> = std::sync::OnceLock::new();

/// Write the installed log buffer out every [`DRAIN_EVERY`], on the current
/// tokio runtime (call it from inside one).
pub fn spawn_drain() {
    if let Some(buffer) = INSTALLED.get().cloned() {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(DRAIN_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                buffer.drain();
            }
        });
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

/// RFC 3339 UTC timestamps with microseconds, like tracing-subscriber's
/// default, with the date and time of day formatted once per second per
/// thread: formatting them on every line showed in the profile of the audit line.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timestamp;

impl tracing_subscriber::fmt::time::FormatTime for Timestamp {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        use std::cell::RefCell;
        thread_local! {
            static PREFIX: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let secs = now.as_secs();
        let micros = now.subsec_micros();
        PREFIX.with(|p| {
            let mut p = p.borrow_mut();
            if p.0 != secs {
                let at = i64::try_from(secs)
                    .ok()
                    .and_then(|s| chrono::DateTime::<chrono::Utc>::from_timestamp(s, 0))
                    .unwrap_or_default();
                p.1 = at.format("%Y-%m-%dT%H:%M:%S").to_string();
                p.0 = secs;
            }
            w.write_str(&p.1)
        })?;
        let mut digits = [b'.', b'0', b'0', b'0', b'0', b'0', b'0', b'Z'];
        let mut n = micros;
        for d in digits[1..7].iter_mut().rev() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
        }
        w.write_str(std::str::from_utf8(&digits).unwrap_or(".000000Z"))
    }
}

/// The fields of a human-readable line: `name=value`, with every value and
/// the message passed through [`crate::untrusted::HiddenEscaper`], so that no
/// field of any crate can put a control character on the line. (The default
/// formatter escapes only the message, and styles each field name even with
/// colours off, which showed in the profile of the audit line.)
#[derive(Debug, Clone, Copy, Default)]
pub struct HumanFields;

struct HumanVisitor<'w> {
    writer: tracing_subscriber::fmt::format::Writer<'w>,
    first: bool,
    result: std::fmt::Result,
}

impl HumanVisitor<'_> {
    fn field(&mut self, name: &str, value: std::fmt::Arguments<'_>) {
        use std::fmt::Write as _;
        if self.result.is_err() {
            return;
        }
        let w = &mut self.writer;
        self.result = (|| {
            if !self.first {
                w.write_char(' ')?;
            }
            if name != "message" {
                w.write_str(name)?;
                w.write_char('=')?;
            }
            crate::untrusted::HiddenEscaper(w).write_fmt(value)
        })();
        self.first = false;
    }
}

impl tracing::field::Visit for HumanVisitor<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.field("message", format_args!("{value}"));
        } else {
            self.field(field.name(), format_args!("{value:?}"));
        }
    }

    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.field(field.name(), format_args!("{value}"));
    }

    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.field(field.name(), format_args!("{value}"));
    }

    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.field(field.name(), format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.field(field.name(), format_args!("{value:?}"));
    }
}

impl<'w> tracing_subscriber::fmt::FormatFields<'w> for HumanFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        writer: tracing_subscriber::fmt::format::Writer<'w>,
        fields: R,
    ) -> std::fmt::Result {
        let mut v = HumanVisitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut v);
        v.result
    }
}

/// The output of hfconnect's own human-readable, uncoloured format, once
/// installed: the audit line is written to it directly (see [`write_info`]).
static DIRECT: std::sync::OnceLock<LineBuffer> = std::sync::OnceLock::new();

/// Write an `INFO` line for `target` whose fields `fields` renders, straight
/// into the log output, in exactly the form the installed subscriber would
/// give it (`{time}  INFO {target}: {fields}`), when hfconnect's own
/// human-readable, uncoloured format is installed; `false` (nothing written)
/// otherwise, and the caller emits a tracing event. The caller has checked
/// that `target` is enabled at `INFO`.
///
/// Why: every task writes an audit line, and tracing's per-event work
/// (dispatch, the format pass, re-escaping the message, two more copies) was
/// most of the line's cost; the profile put it at 3.4 % of serve's CPU.
pub(crate) fn write_info(target: &str, fields: impl FnOnce(&mut String)) -> bool {
    let Some(out) = DIRECT.get() else {
        return false;
    };
    thread_local! {
        static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }
    LINE.with(|line| {
        let mut line = line.borrow_mut();
        line.clear();
        let _ = tracing_subscriber::fmt::time::FormatTime::format_time(
            &Timestamp,
            &mut tracing_subscriber::fmt::format::Writer::new(&mut *line),
        );
        line.push_str("  INFO ");
        line.push_str(target);
        line.push_str(": ");
        fields(&mut line);
        line.push('\n');
        out.push(line.as_bytes());
    });
    true
}

/// Install the global subscriber: `format`, level from `RUST_LOG` (default
/// `info`), to stderr through a [`LineBuffer`]. Keep the guard until the end.
pub fn init(format: LogFormat) -> Option<LogGuard> {
    init_with(format, "info")
}

/// [`init`] with `default` as the level when `RUST_LOG` is unset (the
/// one-shot commands that change things log only their audit events:
/// `hfconnect::audit=info`).
pub fn init_with(format: LogFormat, default: &str) -> Option<LogGuard> {
    crate::untrusted::set_json_logs(format == LogFormat::Json);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let (buffer, guard) = LineBuffer::new(Box::new(std::io::stderr()));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_timer(Timestamp)
        .with_ansi(ansi)
        .with_writer(buffer.clone());
    let installed = match format {
        LogFormat::Human => builder.fmt_fields(HumanFields).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    installed.ok().map(|()| {
        let _ = INSTALLED.set(buffer.clone());
        if format == LogFormat::Human && !ansi {
            let _ = DIRECT.set(buffer);
        }
        guard
    })
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
    fn timestamps_look_like_rfc_3339_with_microseconds() {
        use tracing_subscriber::fmt::time::FormatTime;
        let mut out = String::new();
        Timestamp
            .format_time(&mut tracing_subscriber::fmt::format::Writer::new(&mut out))
            .unwrap();
        let parsed = chrono::DateTime::parse_from_rfc3339(&out).unwrap();
        let age = chrono::Utc::now().signed_duration_since(parsed);
        assert!(age.num_seconds().abs() < 5, "{out}");
        assert_eq!(out.len(), "2026-11-27T18:12:03.123456Z".len(), "{out}");
    }

    #[test]
    fn lines_from_many_threads_arrive_whole_and_none_is_lost() {
        let sink = Sink::default();
        let (buffer, guard) = LineBuffer::new(Box::new(sink.clone()));
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
