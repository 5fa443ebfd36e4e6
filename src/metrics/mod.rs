//! Prometheus metrics of the tasks the Connector runs, updated from the same
//! place as the audit event: tasks by kind, outcome, integration, model and door;
//! latency (whole task and upstream); tokens; denials; rate-limit refusals;
//! tasks in flight. Labels never carry callers, prompts or keys. The series
//! every successful task updates are striped per thread ([`striped`]).

mod striped;

use striped::{GaugeCollector, Names, SeriesCollector, StripedGauge};
pub(crate) use striped::{ModelSeries, SeriesSet};

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::task::Door;

/// Counts a task in `hfconnect_tasks_in_flight` while it lives.
pub(crate) struct InFlight<'a>(&'a StripedGauge);

impl InFlight<'_> {
    pub(crate) fn new(m: &Metrics) -> InFlight<'_> {
        m.in_flight.add(1);
        InFlight(&m.in_flight)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.add(-1);
    }
}

/// The HTTP service's connections: open now, and refused over the cap.
/// `hfconnect_door_requests_total{door, status}`: requests answered by each
/// door of `serve` (`task`: the task routes, `openai`: the OpenAI-compatible
/// routes), by HTTP status. The 200 series of each door are kept as handles,
/// so that a success does not hash its labels.
#[derive(Clone)]
pub(crate) struct DoorMetrics {
    requests: IntCounterVec,
    /// By [`Door::index`].
    ok: [IntCounter; Door::ALL.len()],
}

impl DoorMetrics {
    fn new() -> Result<DoorMetrics, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "hfconnect_door_requests_total",
                "Requests answered by each door of serve (task, openai), by HTTP status",
            ),
            &["door", "status"],
        )?;
        let ok = Door::ALL.map(|d| requests.with_label_values(&[d.as_str(), "200"]));
        Ok(DoorMetrics { requests, ok })
    }

    /// One answer of `door` with `status`.
    pub(crate) fn count(&self, door: Door, status: u16) {
        match (status, self.ok.get(door.index())) {
            (200, Some(ok)) => ok.inc(),
            _ => self
                .requests
                .with_label_values(&[door.as_str(), &status.to_string()])
                .inc(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct ConnectionMetrics {
    pub open: IntGauge,
    pub refused: IntCounter,
}

/// The shared admission backend's series.
#[derive(Debug, Clone)]
pub(crate) struct AdmissionMetrics {
    /// Redis calls' latency.
    pub redis_seconds: Histogram,
    /// Redis calls that failed (error or timeout).
    pub redis_errors: IntCounter,
    /// Times Redis went from reachable to unreachable.
    pub redis_outages: IntCounter,
    /// 0 from a failed Redis call until one succeeds.
    pub redis_up: IntGauge,
    /// Admissions decided without Redis, by `on_unavailable` mode.
    pub fallbacks: IntCounterVec,
    /// Times the Redis server was seen to have restarted (its run id changed).
    pub redis_restarts: IntCounter,
    /// How long tasks that had to wait for a turn waited.
    pub waited: Histogram,
    /// Settles of budget reservations Redis never took.
    pub budget_settle_failures: IntCounter,
    /// Each budget's tokens left (by budget name, a catalog label).
    pub budget_remaining: IntGaugeVec,
    /// Tokens charged by the caller's groups (catalog names only).
    pub group_tokens: IntCounterVec,
}

impl AdmissionMetrics {
    fn new(registry: &Registry) -> Result<AdmissionMetrics, prometheus::Error> {
        let m = AdmissionMetrics {
            redis_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "hfconnect_admission_redis_seconds",
                    "Latency of the shared admission backend's Redis calls",
                )
                .buckets(vec![
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                ]),
            )?,
            redis_errors: IntCounter::new(
                "hfconnect_admission_redis_errors_total",
                "Redis calls of the shared admission backend that failed or timed out",
            )?,
            redis_outages: IntCounter::new(
                "hfconnect_admission_redis_outages_total",
                "Times Redis became unreachable for the shared admission backend",
            )?,
            redis_up: IntGauge::new(
                "hfconnect_admission_redis_up",
                "1 unless the last Redis call of the shared admission backend failed",
            )?,
            fallbacks: IntCounterVec::new(
                Opts::new(
                    "hfconnect_admission_fallbacks_total",
                    "Admissions decided without Redis, by `on_unavailable` (local, deny)",
                ),
                &["mode"],
            )?,
            redis_restarts: IntCounter::new(
                "hfconnect_admission_redis_restarts_total",
                "Times the Redis server of the shared admission backend restarted (its run id changed); an empty Redis forgets the limits' counts",
            )?,
            budget_settle_failures: IntCounter::new(
                "hfconnect_budget_settle_failures_total",
                "Tasks whose tokens could not be charged on Redis within ten minutes of their end",
            )?,
            budget_remaining: IntGaugeVec::new(
                Opts::new(
                    "hfconnect_budget_remaining_tokens",
                    "Tokens a budget has left in its window, as this replica last saw it (per budget; members of an each_member budget are not labels)",
                ),
                &["budget"],
            )?,
            group_tokens: IntCounterVec::new(
                Opts::new(
                    "hfconnect_group_tokens_total",
                    "Tokens charged by group of the caller, integration, model and type (prompt, completion); a caller in two groups counts in both",
                ),
                &["group", "integration", "model", "type"],
            )?,
            waited: Histogram::with_opts(
                HistogramOpts::new(
                    "hfconnect_admission_wait_seconds",
                    "Time tasks that had to wait for a turn under a rate limit, quota or concurrency limit waited",
                )
                .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]),
            )?,
        };
        m.redis_up.set(1);
        registry.register(Box::new(m.redis_seconds.clone()))?;
        registry.register(Box::new(m.redis_errors.clone()))?;
        registry.register(Box::new(m.redis_outages.clone()))?;
        registry.register(Box::new(m.redis_up.clone()))?;
        registry.register(Box::new(m.fallbacks.clone()))?;
        registry.register(Box::new(m.redis_restarts.clone()))?;
        registry.register(Box::new(m.waited.clone()))?;
        registry.register(Box::new(m.budget_settle_failures.clone()))?;
        registry.register(Box::new(m.budget_remaining.clone()))?;
        registry.register(Box::new(m.group_tokens.clone()))?;
        Ok(m)
    }
}

/// The connector's metrics.
pub struct Metrics {
    registry: Registry,
    pub(crate) tasks: IntCounterVec,
    pub(crate) latency: HistogramVec,
    pub(crate) tokens: IntCounterVec,
    pub(crate) denials: IntCounterVec,
    pub(crate) rate_limited: IntCounterVec,
    pub(crate) in_flight: std::sync::Arc<StripedGauge>,
    pub(crate) series: SeriesSet,
    pub(crate) connections: ConnectionMetrics,
    pub(crate) config_reloads: IntCounterVec,
    pub(crate) config_info: IntGaugeVec,
    pub(crate) config_loaded: Gauge,
    pub(crate) admission: AdmissionMetrics,
    pub(crate) doors: DoorMetrics,
    pub(crate) endpoint_operations: IntCounterVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

const NAMES: Names = Names {
    tasks: (
        "hfconnect_tasks_total",
        "Tasks by kind, outcome, integration, model and door (task, openai)",
    ),
    latency: ("hfconnect_task_duration_seconds", "Whole task latency"),
    upstream: (
        "hfconnect_upstream_duration_seconds",
        "Time spent calling Hugging Face, retries included",
    ),
    tokens: (
        "hfconnect_tokens_total",
        "Tokens by integration, model and type (prompt, completion)",
    ),
};

const BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let tasks = IntCounterVec::new(
            Opts::new(NAMES.tasks.0, NAMES.tasks.1),
            &["kind", "outcome", "integration", "model", "door"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(NAMES.latency.0, NAMES.latency.1).buckets(BUCKETS.to_vec()),
            &["kind", "integration", "model"],
        )?;
        let upstream_latency = HistogramVec::new(
            HistogramOpts::new(NAMES.upstream.0, NAMES.upstream.1).buckets(BUCKETS.to_vec()),
            &["integration", "model"],
        )?;
        let tokens = IntCounterVec::new(
            Opts::new(NAMES.tokens.0, NAMES.tokens.1),
            &["integration", "model", "type"],
        )?;
        let denials = IntCounterVec::new(
            Opts::new(
                "hfconnect_denials_total",
                "Tasks refused by access control or an inactive target",
            ),
            &["integration"],
        )?;
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "hfconnect_rate_limited_total",
                "Tasks refused by admission (rate limit, quota, concurrency)",
            ),
            &["integration"],
        )?;
        let in_flight = std::sync::Arc::new(StripedGauge::default());
        let connections = ConnectionMetrics {
            open: IntGauge::new(
                "hfconnect_connections_open",
                "HTTP connections open now (hfconnect serve)",
            )?,
            refused: IntCounter::new(
                "hfconnect_connections_refused_total",
                "HTTP connections refused over --max-connections",
            )?,
        };
        registry.register(Box::new(connections.open.clone()))?;
        registry.register(Box::new(connections.refused.clone()))?;
        let config_reloads = IntCounterVec::new(
            Opts::new(
                "hfconnect_config_reloads_total",
                "Config reloads by outcome (ok, refused: the previous config keeps serving)",
            ),
            &["outcome"],
        )?;
        let config_info = IntGaugeVec::new(
            Opts::new(
                "hfconnect_config_info",
                "The config in force: 1 for the hash of its files",
            ),
            &["hash"],
        )?;
        let config_loaded = Gauge::new(
            "hfconnect_config_loaded_timestamp_seconds",
            "When the config in force was loaded (Unix time)",
        )?;
        registry.register(Box::new(config_reloads.clone()))?;
        registry.register(Box::new(config_info.clone()))?;
        registry.register(Box::new(config_loaded.clone()))?;
        registry.register(Box::new(tasks.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        // Its samples are the striped series' (every upstream call has one);
        // the family is registered so that its help and type are written.
        registry.register(Box::new(upstream_latency))?;
        registry.register(Box::new(tokens.clone()))?;
        registry.register(Box::new(denials.clone()))?;
        registry.register(Box::new(rate_limited.clone()))?;
        let doors = DoorMetrics::new()?;
        registry.register(Box::new(doors.requests.clone()))?;
        registry.register(Box::new(GaugeCollector::new(
            in_flight.clone(),
            "hfconnect_tasks_in_flight",
            "Tasks running now",
        )?))?;
        let series = SeriesSet::default();
        registry.register(Box::new(SeriesCollector {
            set: series.clone(),
            names: NAMES,
        }))?;
        let admission = AdmissionMetrics::new(&registry)?;
        let endpoint_operations = IntCounterVec::new(
            Opts::new(
                "hfconnect_endpoint_operations_total",
                "Inference Endpoint operations (status, pause, resume, scale-to-zero, scale, create, delete, plan, apply, wait) by outcome, integration and model",
            ),
            &["operation", "outcome", "integration", "model"],
        )?;
        registry.register(Box::new(endpoint_operations.clone()))?;
        Ok(Metrics {
            endpoint_operations,
            admission,
            registry,
            tasks,
            latency,
            tokens,
            denials,
            rate_limited,
            doors,
            in_flight,
            series,
            connections,
            config_reloads,
            config_info,
            config_loaded,
        })
    }

    /// Add a front door's own collector (the worker's counters).
    pub(crate) fn register(
        &self,
        c: Box<dyn prometheus::core::Collector>,
    ) -> Result<(), prometheus::Error> {
        self.registry.register(c)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
