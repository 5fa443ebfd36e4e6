//! A bounded fuzz run of the config loader: arbitrary bytes and mutations of
//! the shipped examples, as TOML, YAML and JSON files. Every input must load
//! or be refused with located diagnostics: no panic, no hang (a watchdog per
//! input), and no more memory than [`MEMORY_LIMIT`] — the global allocator
//! refuses beyond it, which aborts the run.
//!
//! It has a binary of its own because the memory limit is the binary's
//! global allocator. The run is seeded and bounded: by default 3000 inputs
//! from a fixed seed (the same inputs every run, about 2 s);
//! `HFCONNECT_FUZZ_CASES`, or `HFCONNECT_FUZZ_SECONDS` for a time box, and
//! `HFCONNECT_FUZZ_SEED` (`random` for a new one, printed) let a longer run
//! explore further (`.ci/run` adds a 20 s one). A failing input is written
//! to `target/fuzz-failure.*`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hfconnect::config::{EnvLookup, LoadOptions};

/// What one input may allocate (with the harness's own, small, share).
const MEMORY_LIMIT: usize = 512 << 20;

#[global_allocator]
static ALLOC: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, MEMORY_LIMIT);

/// How long one input may take to load before it counts as a hang.
const HANG: Duration = Duration::from_secs(10);

/// A small, fast, seedable generator (xorshift*); no dependency needed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

#[derive(Clone, Copy, Debug)]
enum Format {
    Toml,
    Yaml,
    Json,
}

impl Format {
    fn ext(self) -> &'static str {
        match self {
            Format::Toml => "toml",
            Format::Yaml => "yaml",
            Format::Json => "json",
        }
    }

    /// Pieces of the format's syntax worth splicing in.
    fn tokens(self) -> &'static [&'static str] {
        match self {
            Format::Toml => &[
                "[[",
                "]]",
                "[",
                "]",
                "{",
                "}",
                "=",
                "\"",
                "'''",
                "\"\"\"",
                ".",
                "\n",
                "#",
                "\\u0000",
                "1e999",
                "-0",
                "inf",
                "nan",
                "[[integrations]]\n",
                "a.b.c = 1\n",
                "x = [[[[[[1]]]]]]\n",
                "0x7fffffffffffffff",
            ],
            Format::Yaml => &[
                "&a ",
                "*a",
                "<<: *a\n",
                "- ",
                ": ",
                "[",
                "]",
                "{",
                "}",
                "\"",
                "'",
                "\n",
                "#",
                "!!binary ",
                "---\n",
                "%YAML 1.2\n",
                "? ",
                "|\n  ",
                ">-\n  ",
                "&b [*a, *a, *a]\n",
                "\t",
                "~",
                ".inf",
                "0o17",
            ],
            Format::Json => &[
                "{",
                "}",
                "[",
                "]",
                ",",
                ":",
                "\"",
                "\\u0000",
                "\\ud800",
                "1e999",
                "-0",
                "null",
                "true",
                "{\"integrations\": [",
                "]]]]]]",
                "[[[[[[",
                "\"\\\"",
            ],
        }
    }
}

/// The shipped examples, in all three formats (the TOML quickstart is also
/// written out as JSON, so the JSON parser gets a real config to chew on).
fn seeds() -> Vec<(Format, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let quickstart = std::fs::read_to_string(root.join("config-examples/quickstart.toml")).unwrap();
    let multi = std::fs::read(root.join("config-examples/multi-team.yaml")).unwrap();
    let as_json =
        serde_json::to_vec_pretty(&toml::from_str::<serde_json::Value>(&quickstart).unwrap())
            .unwrap();
    vec![
        (Format::Toml, quickstart.into_bytes()),
        (Format::Yaml, multi),
        (Format::Json, as_json),
    ]
}

fn mutate(
    rng: &mut Rng,
    format: Format,
    mut data: Vec<u8>,
    others: &[(Format, Vec<u8>)],
) -> Vec<u8> {
    for _ in 0..1 + rng.below(8) {
        let at = rng.below(data.len() + 1);
        match rng.below(7) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            1 => data.insert(at, rng.next() as u8),
            2 => {
                let t = rng.pick(format.tokens()).as_bytes();
                data.splice(at..at, t.iter().copied());
            }
            3 if !data.is_empty() => {
                let end = (at + rng.below(64)).min(data.len());
                data.drain(at.min(end)..end);
            }
            4 if !data.is_empty() => {
                // Repeat a range: structures that nest or multiply.
                let start = rng.below(data.len());
                let end = (start + 1 + rng.below(32)).min(data.len());
                let piece = data[start..end].to_vec();
                for _ in 0..1 + rng.below(16) {
                    data.splice(at..at, piece.iter().copied());
                }
            }
            5 => {
                let (_, other) = rng.pick(others);
                let start = rng.below(other.len());
                let end = (start + rng.below(256)).min(other.len());
                data.splice(at..at, other[start..end].iter().copied());
            }
            _ => data.truncate(at),
        }
    }
    data.truncate(256 * 1024);
    data
}

/// Load `path` on a thread of its own: whether it was refused, or what went wrong.
fn load(path: &Path) -> Result<bool, String> {
    let (tx, rx) = mpsc::channel();
    let p = path.to_path_buf();
    let env: EnvLookup = Arc::new(|_| None);
    std::thread::spawn(move || {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            match hfconnect::config::load(&p, &LoadOptions::new().env(env)) {
                Ok(_) => Ok(false),
                Err(e) => {
                    // A refusal says where: every diagnostic names the file.
                    match e
                        .diagnostics()
                        .iter()
                        .find(|d| d.file.as_os_str().is_empty() || d.message.is_empty())
                    {
                        Some(d) => Err(format!("a diagnostic without a file or message: {d:?}")),
                        None => Ok(true),
                    }
                }
            }
        }));
        let _ = tx.send(outcome.unwrap_or_else(|_| Err("the loader panicked".into())));
    });
    match rx.recv_timeout(HANG) {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {HANG:?} (a hang)")),
    }
}

fn failure_path(ext: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join(format!("fuzz-failure.{ext}"))
}

#[test]
fn the_config_loader_survives_arbitrary_and_mutated_files() {
    let number = |var: &str| {
        std::env::var(var).ok().map(|s| {
            s.parse::<u64>()
                .unwrap_or_else(|_| panic!("{var} is a number"))
        })
    };
    let seconds = number("HFCONNECT_FUZZ_SECONDS");
    let total = number("HFCONNECT_FUZZ_CASES").unwrap_or(3000) as usize;
    let seed = match std::env::var("HFCONNECT_FUZZ_SEED").ok().as_deref() {
        Some("random") => {
            Instant::now().elapsed().as_nanos() as u64 ^ u64::from(std::process::id()) << 32 | 1
        }
        Some(s) => s
            .parse()
            .expect("HFCONNECT_FUZZ_SEED is a number or `random`"),
        None => 0x5eed_f00d_cafe_0001,
    };
    let seeds = seeds();
    for (format, text) in &seeds {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("seed.{}", format.ext()));
        std::fs::write(&path, text).unwrap();
        hfconnect::config::load(&path, &LoadOptions::new().env(Arc::new(|_| None)))
            .unwrap_or_else(|e| panic!("the {format:?} seed does not load: {e}"));
    }
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(seed);
    let started = Instant::now();
    let mut cases = [0usize; 3];
    let mut refused = 0usize;
    let more = |done: usize| match seconds {
        Some(s) => started.elapsed() < Duration::from_secs(s),
        None => done < total,
    };
    while more(cases.iter().sum()) {
        let (format, base) = rng.pick(&seeds).clone();
        let data = if rng.below(4) == 0 {
            (0..rng.below(4096)).map(|_| rng.next() as u8).collect()
        } else {
            mutate(&mut rng, format, base, &seeds)
        };
        let path = dir.path().join(format!("case.{}", format.ext()));
        std::fs::write(&path, &data).unwrap();
        let before = Instant::now();
        match load(&path) {
            Ok(was_refused) => refused += usize::from(was_refused),
            Err(why) => {
                let keep = failure_path(format.ext());
                let _ = std::fs::write(&keep, &data);
                panic!(
                    "seed {seed}, case {}: {why}; the input is in `{}`",
                    cases.iter().sum::<usize>(),
                    keep.display()
                );
            }
        }
        if before.elapsed() > Duration::from_secs(2) {
            eprintln!(
                "slow input ({:?}): {} bytes of {format:?}",
                before.elapsed(),
                data.len()
            );
        }
        cases[format as usize] += 1;
    }
    eprintln!(
        "fuzzed the config loader for {:.1} s, seed {seed}: {} TOML, {} YAML, {} JSON inputs ({refused} refused), peak check {} MiB allowed",
        started.elapsed().as_secs_f64(),
        cases[0],
        cases[1],
        cases[2],
        MEMORY_LIMIT >> 20
    );
    assert!(
        cases.iter().all(|n| *n > 50),
        "too few cases per format: {cases:?}"
    );
}
