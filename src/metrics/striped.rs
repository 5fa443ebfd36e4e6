//! The success-path series of each model, kept per thread stripe and added up
//! when Prometheus scrapes: successful tasks and their latency by kind,
//! upstream latency, and tokens.
//!
//! Every task updates these. With one shared `prometheus::Histogram` per
//! series, the worker threads took turns on the same cache lines, and the
//! benchmark profile showed the two histogram updates of a task costing more
//! than the connector's own logic. Here each thread writes its own stripe; a
//! stripe's block is allocated when a thread first writes to it, so ten
//! thousand models cost little until they run.
//!
//! The families these series belong to are also fed by the registry's
//! labelled vectors, and the registry merges families by name. The label sets
//! never overlap: these hold only models of the catalog, with task counts of
//! successes only (failures are counted in the vector, by outcome), and the
//! vectors hold latency and tokens only for names outside the catalog.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Bucket, Counter, Histogram, LabelPair, Metric, MetricFamily, MetricType};

use super::BUCKETS;
use crate::catalog::TaskKind;
use crate::stripe::{stripe, STRIPES};
use crate::task::Door;
use rustc_hash::FxHashMap;

/// The task kinds, in the order of a series' arrays.
const KINDS: [TaskKind; TaskKind::ALL.len()] = TaskKind::ALL;

/// `k`'s place in a series' arrays (always below `KINDS.len()`).
fn slot(k: TaskKind) -> usize {
    k.index()
}

/// The buckets plus `+Inf`.
const SLOTS: usize = BUCKETS.len() + 1;

#[derive(Default)]
struct Hist {
    counts: [AtomicU64; SLOTS],
    /// The sum, as `f64` bits.
    sum: AtomicU64,
}

impl Hist {
    fn observe(&self, v: f64) {
        // Prometheus buckets are `le`: the first bound at or above `v`.
        let slot = BUCKETS.partition_point(|b| *b < v);
        if let Some(c) = self.counts.get(slot) {
            c.fetch_add(1, Relaxed);
        }
        // Uncontended in practice (one thread per stripe), so one round.
        let _ = self.sum.fetch_update(Relaxed, Relaxed, |bits| {
            Some((f64::from_bits(bits) + v).to_bits())
        });
    }
}

/// One stripe's share of a model's series; aligned so that neighbouring
/// blocks never share a cache line.
#[derive(Default)]
#[repr(align(128))]
struct Block {
    /// By kind, then door.
    tasks: [AtomicU64; KINDS.len() * Door::ALL.len()],
    latency: [Hist; KINDS.len()],
    upstream: Hist,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
}

/// The success-path series of one model.
pub(crate) struct ModelSeries {
    integration: Arc<str>,
    model: Arc<str>,
    stripes: [OnceLock<Box<Block>>; STRIPES],
}

impl std::fmt::Debug for ModelSeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ModelSeries({}:{})", self.integration, self.model)
    }
}

impl ModelSeries {
    fn block(&self) -> &Block {
        self.stripes[stripe()].get_or_init(Box::default)
    }

    /// A successful task of kind `kind`.
    pub(crate) fn task_ok(
        &self,
        kind: TaskKind,
        door: Door,
        seconds: f64,
        prompt_tokens: Option<u32>,
        completion_tokens: Option<u32>,
    ) {
        let b = self.block();
        b.tasks[slot(kind) * Door::ALL.len() + door.index()].fetch_add(1, Relaxed);
        b.latency[slot(kind)].observe(seconds);
        if let Some(n) = prompt_tokens {
            b.prompt_tokens.fetch_add(u64::from(n), Relaxed);
        }
        if let Some(n) = completion_tokens {
            b.completion_tokens.fetch_add(u64::from(n), Relaxed);
        }
    }

    /// A failed task of kind `kind`: its latency (counted by outcome elsewhere).
    pub(crate) fn task_failed(&self, kind: TaskKind, seconds: f64) {
        self.block().latency[slot(kind)].observe(seconds);
    }

    /// The time one task spent calling the model, retries included.
    pub(crate) fn upstream(&self, seconds: f64) {
        self.block().upstream.observe(seconds);
    }

    fn blocks(&self) -> impl Iterator<Item = &Block> {
        self.stripes.iter().filter_map(|s| s.get().map(|b| &**b))
    }

    fn counter(&self, f: impl Fn(&Block) -> &AtomicU64) -> u64 {
        self.blocks().map(|b| f(b).load(Relaxed)).sum()
    }

    fn histogram(&self, f: impl Fn(&Block) -> &Hist) -> Histogram {
        let mut counts = [0u64; SLOTS];
        let mut sum = 0.0;
        for b in self.blocks() {
            let h = f(b);
            for (total, c) in counts.iter_mut().zip(&h.counts) {
                *total += c.load(Relaxed);
            }
            sum += f64::from_bits(h.sum.load(Relaxed));
        }
        let mut cumulative = 0;
        let buckets = BUCKETS
            .iter()
            .zip(counts)
            .map(|(bound, c)| {
                cumulative += c;
                let mut b = Bucket::default();
                b.set_upper_bound(*bound);
                b.set_cumulative_count(cumulative);
                b
            })
            .collect();
        let mut h = Histogram::default();
        h.set_bucket(buckets);
        h.set_sample_count(counts.iter().sum());
        h.set_sample_sum(sum);
        h
    }
}

type ByModel = FxHashMap<(Arc<str>, Arc<str>), Arc<ModelSeries>>;

/// Every model's series, kept across reloads so that counts never go back.
#[derive(Clone, Default)]
pub(crate) struct SeriesSet {
    by_model: Arc<Mutex<ByModel>>,
}

impl SeriesSet {
    /// The series of `model` of `integration`, made on first use.
    pub(crate) fn get(&self, integration: &Arc<str>, model: &Arc<str>) -> Arc<ModelSeries> {
        let mut map = self.by_model.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry((integration.clone(), model.clone()))
            .or_insert_with(|| {
                Arc::new(ModelSeries {
                    integration: integration.clone(),
                    model: model.clone(),
                    stripes: std::array::from_fn(|_| OnceLock::new()),
                })
            })
            .clone()
    }

    fn all(&self) -> Vec<Arc<ModelSeries>> {
        let map = self.by_model.lock().unwrap_or_else(PoisonError::into_inner);
        map.values().cloned().collect()
    }
}

fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    // Sorted by name, as the registry's own vectors write them.
    let mut out: Vec<LabelPair> = pairs
        .iter()
        .map(|(n, v)| {
            let mut l = LabelPair::default();
            l.set_name((*n).to_string());
            l.set_value((*v).to_string());
            l
        })
        .collect();
    out.sort_by(|a, b| a.name().cmp(b.name()));
    out
}

fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(help.to_string());
    f.set_field_type(kind);
    *f.mut_metric() = metrics;
    f
}

fn counter_metric(pairs: &[(&str, &str)], value: u64) -> Metric {
    let mut c = Counter::default();
    // Prometheus counters are floats; an exact integer up to 2^53.
    #[allow(clippy::cast_precision_loss)]
    c.set_value(value as f64);
    let mut m = Metric::from_label(labels(pairs));
    m.set_counter(c);
    m
}

fn histogram_metric(pairs: &[(&str, &str)], h: Histogram) -> Metric {
    let mut m = Metric::from_label(labels(pairs));
    m.set_histogram(h);
    m
}

/// A gauge every task moves twice (`hfconnect_tasks_in_flight`), kept per
/// thread stripe like the series above and added up when scraped. A task may
/// end on another thread than it started on: the stripes are signed, and
/// only their sum means anything.
#[derive(Default)]
pub(crate) struct StripedGauge {
    slots: [PaddedI64; STRIPES],
}

#[derive(Default)]
#[repr(align(128))]
struct PaddedI64(std::sync::atomic::AtomicI64);

impl StripedGauge {
    pub(crate) fn add(&self, d: i64) {
        self.slots[stripe()].0.fetch_add(d, Relaxed);
    }

    pub(crate) fn get(&self) -> i64 {
        self.slots.iter().map(|s| s.0.load(Relaxed)).sum()
    }
}

/// Adds a [`StripedGauge`] up for a scrape.
pub(crate) struct GaugeCollector {
    gauge: Arc<StripedGauge>,
    name: &'static str,
    help: &'static str,
    desc: Desc,
}

impl GaugeCollector {
    pub(crate) fn new(
        gauge: Arc<StripedGauge>,
        name: &'static str,
        help: &'static str,
    ) -> prometheus::Result<GaugeCollector> {
        Ok(GaugeCollector {
            gauge,
            name,
            help,
            desc: Desc::new(name.into(), help.into(), Vec::new(), Default::default())?,
        })
    }
}

impl Collector for GaugeCollector {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut g = prometheus::proto::Gauge::default();
        #[allow(clippy::cast_precision_loss)]
        g.set_value(self.gauge.get() as f64);
        let mut m = Metric::default();
        m.set_gauge(g);
        vec![family(self.name, self.help, MetricType::GAUGE, vec![m])]
    }
}

/// Names and help texts, shared with the registry's vectors.
pub(crate) struct Names {
    pub tasks: (&'static str, &'static str),
    pub latency: (&'static str, &'static str),
    pub upstream: (&'static str, &'static str),
    pub tokens: (&'static str, &'static str),
}

/// Adds the series up for a scrape. Registered without descriptors: its
/// families share their names with the vectors that hold the other outcomes.
pub(crate) struct SeriesCollector {
    pub(crate) set: SeriesSet,
    pub(crate) names: Names,
}

impl Collector for SeriesCollector {
    fn desc(&self) -> Vec<&Desc> {
        Vec::new()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let all = self.set.all();
        let (mut tasks, mut latency, mut upstream, mut tokens) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for s in &all {
            let (i, m) = (&*s.integration, &*s.model);
            for kind in KINDS {
                let k = slot(kind);
                for door in Door::ALL {
                    let pairs = [
                        ("door", door.as_str()),
                        ("integration", i),
                        ("kind", kind.as_str()),
                        ("model", m),
                        ("outcome", "ok"),
                    ];
                    let d = k * Door::ALL.len() + door.index();
                    tasks.push(counter_metric(&pairs, s.counter(|b| &b.tasks[d])));
                }
                latency.push(histogram_metric(
                    &[("kind", kind.as_str()), ("integration", i), ("model", m)],
                    s.histogram(|b| &b.latency[k]),
                ));
            }
            upstream.push(histogram_metric(
                &[("integration", i), ("model", m)],
                s.histogram(|b| &b.upstream),
            ));
            for (t, f) in [
                (
                    "prompt",
                    (|b: &Block| &b.prompt_tokens) as fn(&Block) -> &AtomicU64,
                ),
                ("completion", |b: &Block| &b.completion_tokens),
            ] {
                tokens.push(counter_metric(
                    &[("integration", i), ("model", m), ("type", t)],
                    s.counter(f),
                ));
            }
        }
        let n = &self.names;
        vec![
            family(n.tasks.0, n.tasks.1, MetricType::COUNTER, tasks),
            family(n.latency.0, n.latency.1, MetricType::HISTOGRAM, latency),
            family(n.upstream.0, n.upstream.1, MetricType::HISTOGRAM, upstream),
            family(n.tokens.0, n.tokens.1, MetricType::COUNTER, tokens),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_with(values: &[f64]) -> (SeriesSet, Arc<ModelSeries>) {
        let set = SeriesSet::default();
        let s = set.get(&"hf".into(), &"tgi".into());
        // From several threads, so that several stripes hold a share.
        std::thread::scope(|scope| {
            for chunk in values.chunks(3) {
                let s = s.clone();
                scope.spawn(move || {
                    for v in chunk {
                        s.task_ok(TaskKind::TextGeneration, Door::Task, *v, Some(2), Some(5));
                        s.upstream(*v / 2.0);
                    }
                });
            }
        });
        (set, s)
    }

    #[test]
    fn stripes_add_up_to_what_one_prometheus_histogram_reports() {
        let values = [0.0005, 0.001, 0.003, 0.2, 0.2, 7.0, 200.0, 0.04, 1.5, 31.0];
        let (_, s) = set_with(&values);
        let reference = prometheus::Histogram::with_opts(
            prometheus::HistogramOpts::new("r", "r").buckets(BUCKETS.to_vec()),
        )
        .unwrap();
        for v in values {
            reference.observe(v);
        }
        let want = reference.collect()[0].get_metric()[0]
            .get_histogram()
            .clone();
        let got = s.histogram(|b| &b.latency[0]);
        assert_eq!(got.get_sample_count(), want.get_sample_count());
        assert!((got.get_sample_sum() - want.get_sample_sum()).abs() < 1e-9);
        let bounds = |h: &Histogram| -> Vec<(f64, u64)> {
            h.get_bucket()
                .iter()
                .map(|b| (b.upper_bound(), b.cumulative_count()))
                .collect()
        };
        assert_eq!(bounds(&got), bounds(&want));
        assert_eq!(s.counter(|b| &b.tasks[0]), 10);
        assert_eq!(s.counter(|b| &b.tasks[1]), 0);
        assert_eq!(s.counter(|b| &b.prompt_tokens), 20);
        assert_eq!(s.counter(|b| &b.completion_tokens), 50);
    }

    #[test]
    fn a_series_is_the_same_across_lookups() {
        let (set, s) = set_with(&[0.1]);
        let again = set.get(&"hf".into(), &"tgi".into());
        assert!(Arc::ptr_eq(&s, &again));
    }
}
