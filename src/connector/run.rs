//! The one way to run a task: a [`TaskRequest`] (who, what, by which door,
//! streamed or not) and [`Connector::run`](super::Connector::run). Plain and streamed tasks share
//! every step — plan, decide and prepare, admit, call, time, shape, record —
//! and differ only in how the provider's answer reaches the caller.
//!
//! One guard per task ([`TaskRun`]) owns the in-flight gauge and the audit
//! event with its metrics: the event is written exactly once, when the task
//! ends, or — when the task is dropped first, a caller that went away — as
//! `cancelled`. A streamed task is refused before anything is sent upstream
//! (unknown, inactive, denied, invalid, rate limited) as [`Ran::reply`]'s
//! error; only what fails after that is an item of the stream.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt};

use super::audit::{record_refusal, Audit, Labels, Outcome, Refusal, TaskId, UNKNOWN};
use super::prepare::{embed_output, prepare, to_output, Call, Prepared};
use super::snapshot::Plan;
use super::spend::{self, Charged, Ending, Held};
use super::{Core, Snapshot, TaskStream};
use crate::access::{Decision, Principal};
use crate::admission::budget::Tokens;
use crate::admission::{AdmissionError, Headroom, Limited, Permit};
use crate::catalog::TokenHeadroom;
use crate::metrics::{InFlight, Metrics};
use crate::provider::{Completion, CompletionStream, LlmProvider, ProviderError, StreamEvent};
use crate::task::{Door, Task, TaskError, TaskErrorKind, TaskEvent, TaskOutput};

/// A task to run: who asks for it, the task, the door it came by (its
/// metrics' `door` label) and whether its text is streamed.
#[derive(Debug, Clone)]
pub struct TaskRequest<'a> {
    principal: Cow<'a, Principal>,
    task: Cow<'a, Task>,
    door: Door,
    stream: bool,
}

impl<'a> TaskRequest<'a> {
    /// A plain task by the library door.
    pub fn new(principal: &'a Principal, task: &'a Task) -> TaskRequest<'a> {
        TaskRequest {
            principal: Cow::Borrowed(principal),
            task: Cow::Borrowed(task),
            door: Door::Library,
            stream: false,
        }
    }

    /// [`TaskRequest::new`] owning its principal and task.
    pub fn owned(principal: Principal, task: Task) -> TaskRequest<'static> {
        TaskRequest {
            principal: Cow::Owned(principal),
            task: Cow::Owned(task),
            door: Door::Library,
            stream: false,
        }
    }

    /// The door the task came by.
    pub(crate) fn via(mut self, door: Door) -> Self {
        self.door = door;
        self
    }

    /// Stream the task's text ([`Reply::Stream`]).
    pub fn streamed(mut self) -> Self {
        self.stream = true;
        self
    }

    fn into_owned(self) -> TaskRequest<'static> {
        TaskRequest {
            principal: Cow::Owned(self.principal.into_owned()),
            task: Cow::Owned(self.task.into_owned()),
            door: self.door,
            stream: self.stream,
        }
    }
}

/// What a task gave: its output, or its stream.
#[derive(Debug)]
#[non_exhaustive]
pub enum Reply {
    /// A plain task's output.
    Output(TaskOutput),
    /// A streamed task's chunks, then its output.
    Stream(TaskStream),
}

/// A task run: the access decision taken on the way, when one was (a task
/// naming an unknown model is refused before any decision), and the reply
/// or why not.
#[derive(Debug)]
#[non_exhaustive]
pub struct Ran {
    /// The decision, the one value the audit event recorded.
    pub decision: Option<Decision>,
    /// The output or stream, or why not.
    pub reply: Result<Reply, TaskError>,
}

impl Ran {
    /// A plain task's output (a streamed task's is read from its stream:
    /// asking for it here is an error saying so).
    pub fn output(self) -> Result<TaskOutput, TaskError> {
        match self.reply? {
            Reply::Output(o) => Ok(o),
            Reply::Stream(_) => Err(TaskError::new(
                TaskErrorKind::InvalidInput,
                "the task was asked for streamed: read its output from `Ran::stream`",
            )),
        }
    }

    /// A streamed task's stream (a plain task's output as a stream of one item).
    pub fn stream(self) -> Result<TaskStream, TaskError> {
        match self.reply? {
            Reply::Stream(s) => Ok(s),
            Reply::Output(o) => Ok(TaskStream {
                headroom: o.headroom,
                token_headroom: o.token_headroom,
                inner: Box::pin(futures_util::stream::once(std::future::ready(Ok(
                    TaskEvent::Done(o),
                )))),
            }),
        }
    }
}

/// One task, from its plan to its record.
struct TaskRun<'a, P> {
    snap: &'a Snapshot<P>,
    metrics: &'a Metrics,
    principal: &'a Principal,
    task: &'a Task,
    task_id: TaskId,
    started: Instant,
    /// Set once the names are known to the catalog.
    plan: Option<Plan<'a, P>>,
    /// The labels of a task whose plan could not be made.
    labels: Labels<'a>,
    decided: Option<Decision>,
    done: bool,
    door: Door,
    /// Time spent waiting for admission.
    queued: Duration,
    /// The task's hold on the budgets that cover it, until it is settled.
    budget: Option<Held>,
    /// The most tokens the task can use, when that is known.
    need: Option<Tokens>,
    /// What the task was charged, once it ended.
    charged: Charged,
    /// Whether it was admitted (its tokens, if any, count).
    admitted: bool,
    /// Whether the task's text is being streamed, and how many tokens were.
    streamed: bool,
    delivered: u64,
    _in_flight: InFlight<'a>,
}

impl<'a, P: LlmProvider> TaskRun<'a, P> {
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
            plan: None,
            labels: Labels {
                integration: UNKNOWN,
                model: UNKNOWN,
            },
            decided: None,
            done: false,
            queued: Duration::ZERO,
            budget: None,
            need: None,
            charged: Charged::default(),
            admitted: false,
            streamed: false,
            delivered: 0,
            _in_flight: InFlight::new(metrics),
        }
    }

    /// Plan, decide and prepare, admit: what both paths do before the call.
    async fn start(&mut self) -> Result<(Prepared<'a, P>, Permit), TaskError> {
        let plan = match self.snap.plan(self.task.integration(), self.task.model()) {
            Ok(plan) => plan,
            Err((e, labels)) => {
                self.labels = labels;
                return Err(e);
            }
        };
        self.plan = Some(plan);
        let (decided, prepared) = prepare(plan, &self.snap.catalog, self.principal, self.task);
        self.decided = decided;
        let p = prepared?;
        let permit = self
            .snap
            .admission
            .admit(self.principal, plan.place, p.cost)
            .await
            .map_err(refused)?;
        self.queued = permit.waited;
        if !permit.waited.is_zero() {
            self.metrics
                .admission
                .waited
                .observe(permit.waited.as_secs_f64());
        }
        self.need = spend::worst_case(&p.call, plan.model);
        self.budget = spend::reserve(
            &self.snap.admission,
            &self.snap.catalog,
            self.principal,
            plan.integration.name(),
            plan.model,
            &p.call,
        )
        .await?;
        self.admitted = true;
        Ok((p, permit))
    }

    /// The call of a plain task (and of a streamed one whose kind has no
    /// text to stream): its output, shaped, with the admission's headroom.
    async fn call(
        &mut self,
        plan: Plan<'a, P>,
        call: &Call,
        json_output: bool,
        headroom: Option<Headroom>,
    ) -> Result<TaskOutput, TaskError> {
        let (provider, endpoint) = (plan.provider, &**plan.model.spec());
        let upstream = Instant::now();
        let done = match call {
            Call::Generate(r) => provider.generate(endpoint, r).await,
            Call::Chat(r) => provider.chat(endpoint, r).await,
            Call::Summarize(r) => provider.summarize(endpoint, r).await,
            Call::Embed(e) => {
                let done = provider.embed(endpoint, &e.request).await;
                let took = done
                    .as_ref()
                    .map_or_else(|_| upstream.elapsed(), |v| v.timings.total);
                self.upstream(took);
                return done
                    .map_err(TaskError::from_provider)
                    .and_then(|v| embed_output(v, e, plan.model.name()))
                    .map(|o| with_headroom(o, headroom, self.token_headroom()));
            }
        };
        let took = done
            .as_ref()
            .map_or_else(|_| upstream.elapsed(), |c| c.timings.total);
        let tokens = self.token_headroom();
        self.complete(done, took, json_output)
            .map(|o| with_headroom(o, headroom, tokens))
    }

    /// A finished generation, timed and shaped.
    fn complete(
        &mut self,
        done: Result<Completion, ProviderError>,
        took: Duration,
        json_output: bool,
    ) -> Result<TaskOutput, TaskError> {
        self.upstream(took);
        done.map_err(TaskError::from_provider)
            .and_then(|c| to_output(c, json_output))
    }

    /// What is left of the tightest budget the task was reserved under.
    fn token_headroom(&self) -> Option<TokenHeadroom> {
        self.budget.as_ref().and_then(|b| b.headroom)
    }

    /// Time spent calling the model, retries included.
    fn upstream(&self, took: Duration) {
        if let Some(plan) = &self.plan {
            plan.series.upstream(took.as_secs_f64());
        }
    }
}

impl<P> TaskRun<'_, P> {
    fn record(&mut self, outcome: Outcome<'_>) {
        if self.done {
            return;
        }
        self.done = true;
        let (labels, series) = match &self.plan {
            Some(p) => (p.labels(), Some(p.series)),
            None => (self.labels, None),
        };
        let audit = Audit {
            metrics: self.metrics,
            include_text: self.snap.runtime.audit_include_text(),
            task_id: self.task_id,
            principal: self.principal,
            task: self.task,
            labels,
            started: self.started,
            door: self.door,
            queued: self.queued,
            charged: (
                self.charged
                    .tokens
                    .prompt
                    .saturating_add(self.charged.tokens.completion),
                &self.charged.budgets,
            ),
        };
        audit.record(self.decided.as_ref(), outcome, series);
    }

    fn finish(&mut self, result: &Result<TaskOutput, TaskError>) {
        self.charge(Ending::Done(result));
        self.record(Outcome::Done(result));
    }

    /// Settle the task's budgets to what it used, and count that (by day,
    /// by group); only once, and only for a task that reached the model.
    fn charge(&mut self, ending: Ending<'_>) {
        if self.done {
            return;
        }
        let (Some(plan), Some(_)) = (&self.plan, &self.decided) else {
            return;
        };
        let used = spend::used(ending, self.streamed, self.delivered, self.need);
        let (integration, model) = (plan.integration.name(), plan.model.name());
        let day = crate::admission::DayOf {
            subject: self.principal.subject(),
            integration,
            model,
        };
        let budgets = match self.budget.take() {
            Some(held) => held.settle(&self.snap.admission, used, day),
            None if self.admitted => {
                self.snap
                    .admission
                    .record_day(self.principal.subject(), integration, model, used);
                Vec::new()
            }
            None => return,
        };
        spend::count_by_group(
            self.snap.admission.metrics(),
            &self.snap.catalog,
            self.principal,
            (integration, model),
            used,
        );
        self.charged = Charged {
            tokens: used,
            budgets,
        };
    }
}

impl<P> Drop for TaskRun<'_, P> {
    fn drop(&mut self) {
        self.charge(Ending::Cancelled);
        self.record(Outcome::Cancelled);
    }
}

fn with_headroom(
    mut o: TaskOutput,
    headroom: Option<Headroom>,
    tokens: Option<TokenHeadroom>,
) -> TaskOutput {
    o.headroom = headroom;
    o.token_headroom = tokens;
    o
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

/// What the stream of a task yields inside: whether it started (with the
/// decision and headroom), then events.
enum Step {
    Started(Option<Decision>, Option<Headroom>, Option<TokenHeadroom>),
    Refused(Option<Decision>, TaskError),
    Event(Result<TaskEvent, TaskError>),
}

impl<P: LlmProvider> Core<P> {
    /// Run a task: plain or streamed as the request says. Refusals before
    /// anything is sent upstream (unknown names, inactive, denied, invalid
    /// input, rate limited) are the reply's error, for both.
    pub async fn run(&self, req: TaskRequest<'_>) -> Ran {
        if req.stream {
            return self.start_stream(req.into_owned()).await;
        }
        let snap = self.state.load_full();
        let mut run = TaskRun::begin(&snap, &self.metrics, &req.principal, &req.task, req.door);
        let result = match run.start().await {
            Ok((p, permit)) => {
                let out = run
                    .call(p.plan, &p.call, p.json_output, permit.headroom)
                    .await;
                drop(permit);
                out
            }
            Err(e) => Err(e),
        };
        run.finish(&result);
        Ran {
            decision: run.decided.take(),
            reply: result.map(Reply::Output),
        }
    }

    async fn start_stream(&self, req: TaskRequest<'static>) -> Ran {
        let mut steps = Box::pin(self.steps(req));
        match steps.next().await {
            Some(Step::Started(decision, headroom, token_headroom)) => Ran {
                decision,
                reply: Ok(Reply::Stream(TaskStream {
                    inner: Box::pin(steps.filter_map(|s| {
                        std::future::ready(match s {
                            Step::Event(e) => Some(e),
                            Step::Started(..) | Step::Refused(..) => None,
                        })
                    })),
                    headroom,
                    token_headroom,
                })),
            },
            Some(Step::Refused(decision, e)) => Ran {
                decision,
                reply: Err(e),
            },
            Some(Step::Event(_)) | None => Ran {
                decision: None,
                reply: Err(TaskError::new(
                    TaskErrorKind::InvalidOutput,
                    "the task's stream ended before it started",
                )),
            },
        }
    }

    fn steps(&self, req: TaskRequest<'static>) -> impl Stream<Item = Step> + Send + 'static {
        let snap = self.state.load_full();
        let metrics = self.metrics.clone();
        async_stream::stream! {
            let mut run = TaskRun::begin(&snap, &metrics, &req.principal, &req.task, req.door);
            let (p, permit) = match run.start().await {
                Ok(started) => started,
                Err(e) => {
                    run.finish(&Err(e.clone()));
                    yield Step::Refused(run.decided.take(), e);
                    return;
                }
            };
            yield Step::Started(run.decided.clone(), permit.headroom, run.token_headroom());
            // Held until the stream ends, whichever way.
            let _permit = permit;
            let Prepared { plan, call, json_output, .. } = p;
            let (provider, endpoint) = (plan.provider, &**plan.model.spec());
            let upstream = Instant::now();
            let mut inner: CompletionStream = match call {
                Call::Generate(r) => provider.generate_stream(endpoint, r),
                Call::Chat(r) => provider.chat_stream(endpoint, r),
                // A summary does not stream: it is one chunk, then the output;
                // vectors have no text: the output is the only item.
                other => {
                    let result = run.call(plan, &other, json_output, None).await;
                    run.finish(&result);
                    if let (Ok(o), Call::Summarize(_)) = (&result, &other) {
                        if let Some(text) = o.result.as_text() {
                            yield Step::Event(Ok(TaskEvent::Chunk(text.to_string())));
                        }
                    }
                    yield Step::Event(result.map(TaskEvent::Done));
                    return;
                }
            };
            run.streamed = true;
            while let Some(item) = inner.next().await {
                let done = match item {
                    Ok(StreamEvent::Token(t)) => {
                        run.delivered += 1;
                        yield Step::Event(Ok(TaskEvent::Chunk(t)));
                        continue;
                    }
                    Ok(StreamEvent::Done(c)) => {
                        let took = c.timings.total;
                        run.complete(Ok(c), took, json_output)
                    }
                    Err(e) => run.complete(Err(e), upstream.elapsed(), json_output),
                };
                run.finish(&done);
                yield Step::Event(done.map(TaskEvent::Done));
                return;
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
