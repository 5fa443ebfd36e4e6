//! Steps three to six of the task path, one path for plain and streamed
//! tasks: admission, the provider call, the output, the record.
//!
//! One guard per task ([`TaskRun`]) owns the in-flight gauge and the audit
//! event with its metrics: the event is written exactly once, when the task
//! ends, or — when the task is dropped first, a caller that went away — as
//! `cancelled`. A streamed task is refused before anything is sent upstream
//! (unknown, inactive, denied, invalid, rate limited) through
//! [`Connector::start_stream`]'s error; only what fails after that is an
//! item of the stream.

use std::time::Instant;

use futures_util::{Stream, StreamExt};

use super::audit::{record_refusal, Audit, Decided, Outcome, Refusal, TaskId};
use super::prepare::{embed_output, prepare, to_output, Call, EmbedCall, Prepared};
use super::{Connector, Snapshot, TaskStream};
use crate::access::Principal;
use crate::admission::{AdmissionError, Headroom, Limited, Permit};
use crate::metrics::{InFlight, Metrics};
use crate::provider::{CompletionStream, LlmProvider, StreamEvent};
use crate::task::{Door, Task, TaskError, TaskErrorKind, TaskEvent, TaskOutput};

/// What access decided about a task, in words (for engines that log it).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskDecision {
    /// Allowed or refused.
    pub allowed: bool,
    /// Why: the grant that allowed it, or what was checked and is missing.
    pub reason: String,
}

/// A task's result and the access decision taken on the way, when one was
/// (a task naming an unknown model is refused before any decision).
#[derive(Debug)]
#[non_exhaustive]
pub struct Executed {
    /// The decision.
    pub decision: Option<TaskDecision>,
    /// The output, or why not.
    pub result: Result<TaskOutput, TaskError>,
}

/// One task, from its decision to its record.
struct TaskRun<'a, P> {
    snap: &'a Snapshot<P>,
    metrics: &'a Metrics,
    principal: &'a Principal,
    task: &'a Task,
    task_id: TaskId,
    started: Instant,
    decided: Decided,
    done: bool,
    door: Door,
    /// Time spent waiting for admission.
    queued: std::time::Duration,
    _in_flight: InFlight<'a>,
}

impl<'a, P> TaskRun<'a, P> {
    fn begin(
        snap: &'a Snapshot<P>,
        metrics: &'a Metrics,
        principal: &'a Principal,
        task: &'a Task,
        door: Door,
    ) -> TaskRun<'a, P> {
        TaskRun {
            door,
            snap,
            metrics,
            principal,
            task,
            task_id: TaskId::new(),
            started: Instant::now(),
            decided: None,
            done: false,
            queued: std::time::Duration::ZERO,
            _in_flight: InFlight::new(metrics),
        }
    }

    fn record(&mut self, outcome: Outcome<'_>) {
        if self.done {
            return;
        }
        self.done = true;
        let audit = Audit {
            metrics: self.metrics,
            include_text: self.snap.catalog.audit_include_text(),
            task_id: self.task_id,
            principal: self.principal,
            task: self.task,
            labels: self.snap.labels(self.task),
            started: self.started,
            door: self.door,
            queued: self.queued,
        };
        let handles = self
            .snap
            .handles(self.task.integration(), self.task.model());
        audit.record(&self.decided, outcome, handles);
    }

    fn finish(&mut self, result: &Result<TaskOutput, TaskError>) {
        self.record(Outcome::Done(result));
    }

    /// The decision in words, for the caller that asked.
    fn decision(&self) -> Option<TaskDecision> {
        self.decided.as_ref().map(|(allowed, why)| TaskDecision {
            allowed: *allowed,
            reason: why.to_string(),
        })
    }

    /// A task admitted: how long it waited, and the wait's metric.
    fn admitted(&mut self, permit: &Permit) {
        self.queued = permit.waited;
        if !permit.waited.is_zero() {
            self.metrics
                .admission
                .waited
                .observe(permit.waited.as_secs_f64());
        }
    }

    /// Time spent calling the model, retries included.
    fn upstream(&self, seconds: f64) {
        let labels = self.snap.labels(self.task);
        match self
            .snap
            .handles(self.task.integration(), self.task.model())
        {
            Some(h) => h.upstream(seconds),
            None => self
                .metrics
                .upstream_latency
                .with_label_values(&[labels.integration, labels.model])
                .observe(seconds),
        }
    }
}

impl<P> Drop for TaskRun<'_, P> {
    fn drop(&mut self) {
        self.record(Outcome::Cancelled);
    }
}

/// A task that admission refused: rate limited, with the wait it named, or
/// overloaded when the shared limits cannot be checked.
fn refused(e: AdmissionError) -> TaskError {
    match e.limited {
        Limited::Unavailable => TaskError::overloaded(e.message, e.retry_after),
        // No wait admits it: the task must change.
        Limited::TooLarge => TaskError::new(TaskErrorKind::InvalidInput, e.message),
        _ => TaskError::rate_limited(e.message, e.retry_after),
    }
}

/// An embeddings call: the provider's vectors as the task's output, its
/// upstream time recorded. Vectors have no text to stream, so plain and
/// streamed tasks both end here.
async fn embed<P: LlmProvider>(
    run: &mut TaskRun<'_, P>,
    p: &Prepared<'_, P>,
    e: &EmbedCall,
) -> Result<TaskOutput, TaskError> {
    let upstream = Instant::now();
    let done = p.provider.embed(p.endpoint, &e.request).await;
    let took = match &done {
        Ok(v) => v.timings.total,
        Err(_) => upstream.elapsed(),
    };
    run.upstream(took.as_secs_f64());
    done.map_err(TaskError::from)
        .and_then(|v| embed_output(v, e, p.model))
}

/// What the stream of a task yields inside: whether it started, then events.
enum Step {
    Started(Option<Headroom>),
    Refused(TaskError),
    Event(Result<TaskEvent, TaskError>),
}

impl<P: LlmProvider> Connector<P> {
    /// Run a task on behalf of `principal`.
    pub async fn execute(
        &self,
        principal: &Principal,
        task: &Task,
    ) -> Result<TaskOutput, TaskError> {
        self.run(principal, task, false, Door::Task).await.result
    }

    /// [`Connector::execute`] for a task that came by `door` (its metrics'
    /// `door` label).
    pub async fn execute_via(
        &self,
        door: Door,
        principal: &Principal,
        task: &Task,
    ) -> Result<TaskOutput, TaskError> {
        self.run(principal, task, false, door).await.result
    }

    /// Run a task, and say what access decided on the way (the Conductor
    /// worker writes it into the task's log): the decision travels with the
    /// result, so nobody decides twice.
    pub async fn execute_explained(&self, principal: &Principal, task: &Task) -> Executed {
        self.run(principal, task, true, Door::Task).await
    }

    async fn run(&self, principal: &Principal, task: &Task, explain: bool, door: Door) -> Executed {
        let snap = self.state.load_full();
        let mut run = TaskRun::begin(&snap, &self.metrics, principal, task, door);
        let (decided, prepared) = prepare(&snap, principal, task);
        run.decided = decided;
        let decision = if explain { run.decision() } else { None };
        let result = match prepared {
            Err(e) => Err(e),
            Ok(p) => match snap
                .admission
                .admit(principal, p.integration, p.model, p.cost)
                .await
                .map_err(refused)
            {
                Err(e) => Err(e),
                Ok(permit) => {
                    run.admitted(&permit);
                    let headroom = permit.headroom;
                    let upstream = Instant::now();
                    let done = match &p.call {
                        Call::Generate(r) => p.provider.generate(p.endpoint, r).await,
                        Call::Chat(r) => p.provider.chat(p.endpoint, r).await,
                        Call::Summarize(r) => p.provider.summarize(p.endpoint, r).await,
                        Call::Embed(e) => {
                            let result = embed(&mut run, &p, e).await.map(|mut o| {
                                o.headroom = headroom;
                                o
                            });
                            run.finish(&result);
                            drop(permit);
                            return Executed { decision, result };
                        }
                    };
                    drop(permit);
                    // The provider timed a success already: one clock read fewer.
                    let took = match &done {
                        Ok(c) => c.timings.total,
                        Err(_) => upstream.elapsed(),
                    };
                    run.upstream(took.as_secs_f64());
                    done.map_err(TaskError::from)
                        .and_then(|c| to_output(c, p.json_output))
                        .map(|mut o| {
                            o.headroom = headroom;
                            o
                        })
                }
            },
        };
        run.finish(&result);
        Executed { decision, result }
    }

    /// Start a streamed task. A task refused before anything is sent upstream
    /// (unknown names, inactive, denied, invalid input, rate limited) is this
    /// error; what fails after that is an item of the stream. The stream
    /// yields text chunks, then the output.
    pub async fn start_stream(
        &self,
        principal: &Principal,
        task: &Task,
    ) -> Result<TaskStream, TaskError> {
        self.start_stream_via(Door::Task, principal, task).await
    }

    /// [`Connector::start_stream`] for a task that came by `door`.
    pub async fn start_stream_via(
        &self,
        door: Door,
        principal: &Principal,
        task: &Task,
    ) -> Result<TaskStream, TaskError> {
        let mut steps = Box::pin(self.steps(principal.clone(), task.clone(), door));
        match steps.next().await {
            Some(Step::Started(headroom)) => Ok(TaskStream {
                inner: Box::pin(steps.filter_map(|s| {
                    std::future::ready(match s {
                        Step::Event(e) => Some(e),
                        Step::Started(_) | Step::Refused(_) => None,
                    })
                })),
                headroom,
            }),
            Some(Step::Refused(e)) => Err(e),
            Some(Step::Event(_)) | None => Err(TaskError::new(
                TaskErrorKind::InvalidOutput,
                "the task's stream ended before it started",
            )),
        }
    }

    /// Run a task, streaming its text: chunks, then the output; a refusal is
    /// the stream's only item. (The HTTP service uses
    /// [`Connector::start_stream`], which answers refusals with a status.)
    pub fn execute_stream(&self, principal: &Principal, task: &Task) -> TaskStream {
        TaskStream {
            inner: Box::pin(
                self.steps(principal.clone(), task.clone(), Door::Task)
                    .filter_map(|s| {
                        std::future::ready(match s {
                            Step::Started(_) => None,
                            Step::Refused(e) => Some(Err(e)),
                            Step::Event(e) => Some(e),
                        })
                    }),
            ),
            headroom: None,
        }
    }

    fn steps(
        &self,
        principal: Principal,
        task: Task,
        door: Door,
    ) -> impl Stream<Item = Step> + Send + 'static {
        let snap = self.state.load_full();
        let metrics = self.metrics.clone();
        async_stream::stream! {
            let mut run = TaskRun::begin(&snap, &metrics, &principal, &task, door);
            let (decided, prepared) = prepare(&snap, &principal, &task);
            run.decided = decided;
            let p = match prepared {
                Ok(p) => p,
                Err(e) => {
                    run.finish(&Err(e.clone()));
                    yield Step::Refused(e);
                    return;
                }
            };
            let permit = match snap.admission.admit(&principal, p.integration, p.model, p.cost).await.map_err(refused) {
                Ok(permit) => permit,
                Err(e) => {
                    run.finish(&Err(e.clone()));
                    yield Step::Refused(e);
                    return;
                }
            };
            run.admitted(&permit);
            yield Step::Started(permit.headroom);
            // Held until the stream ends, whichever way.
            let _permit = permit;
            let upstream = Instant::now();
            let mut inner: CompletionStream = match p.call {
                Call::Generate(r) => p.provider.generate_stream(p.endpoint, r),
                Call::Chat(r) => p.provider.chat_stream(p.endpoint, r),
                // A summary does not stream: it is one chunk, then the output.
                Call::Summarize(r) => {
                    let items = match p.provider.summarize(p.endpoint, &r).await {
                        Ok(c) => vec![Ok(StreamEvent::Token(c.text.clone())), Ok(StreamEvent::Done(c))],
                        Err(e) => vec![Err(e)],
                    };
                    Box::pin(futures_util::stream::iter(items))
                }
                // Vectors have no text to stream: the output is the only item.
                Call::Embed(ref e) => {
                    let result = embed(&mut run, &p, e).await;
                    run.finish(&result);
                    yield Step::Event(result.map(TaskEvent::Done));
                    return;
                }
            };
            while let Some(item) = inner.next().await {
                match item {
                    Ok(StreamEvent::Token(t)) => yield Step::Event(Ok(TaskEvent::Chunk(t))),
                    Ok(StreamEvent::Done(c)) => {
                        run.upstream(c.timings.total.as_secs_f64());
                        let result = to_output(c, p.json_output);
                        run.finish(&result);
                        yield Step::Event(result.map(TaskEvent::Done));
                        return;
                    }
                    Err(e) => {
                        run.upstream(upstream.elapsed().as_secs_f64());
                        let result = Err(TaskError::from(e));
                        run.finish(&result);
                        if let Err(e) = result {
                            yield Step::Event(Err(e));
                        }
                        return;
                    }
                }
            }
            let e = TaskError::new(
                TaskErrorKind::InvalidOutput,
                "the model's stream ended without its output",
            );
            run.finish(&Err(e.clone()));
            yield Step::Event(Err(e));
        }
    }

    /// Record a request refused before it became a task (the HTTP service's
    /// 400, 401, 403, 404, 408, 413, 422): one audit event and one count.
    pub(crate) fn record_refusal(&self, r: &Refusal<'_>) {
        let snap = self.state.load();
        let labels = snap.labels_of(r.integration.unwrap_or(""), r.model.unwrap_or(""));
        record_refusal(&self.metrics, r, labels);
    }
}
