//! One pass: snapshot → render → plan → write. The whole config is one function of the whole
//! cluster state, so there is one pass for everything rather than one per object; a bad object
//! shows up in its own status and never fails the pass.

use std::time::{Duration, Instant};

use rand::CryptoRng;

use super::incremental::{Memo, decide_incrementally};
use super::observed::{ObserveError, Observed, WriteOverlay};
use super::plan::{Write, plan};
use super::writer::{WriteOutcome, Writer};
use crate::render::{RenderContext, RenderError, render};

/// Why a pass could not decide anything.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The snapshot could not become render input.
    #[error(transparent)]
    Observe(#[from] ObserveError),
    /// Render could not produce outputs.
    #[error(transparent)]
    Render(#[from] RenderError),
}

/// What a pass decided.
#[derive(Debug)]
pub struct Decision {
    /// The writes, in order.
    pub writes: Vec<Write>,
    /// Resources whose Ready condition is not True.
    pub not_ready: usize,
    /// Whether render generated a new master key ring (there was none).
    pub key_ring_generated: bool,
}

/// Decides without I/O: what must be written so the cluster matches the render of `observed`.
pub fn decide(
    observed: &Observed,
    ctx: &RenderContext,
    rng: &mut dyn CryptoRng,
) -> Result<Decision, ReconcileError> {
    let input = observed.render_input(&ctx.platform_namespace)?;
    let output = render(input, ctx, rng)?;
    let writes = plan(&output, observed)?;
    Ok(Decision {
        writes,
        not_ready: output.report.not_ready().len(),
        key_ring_generated: output.key_ring_generated,
    })
}

/// What a pass keeps for the next: the last output ([`Memo`]) and how long it may serve
/// before a full pass (the resync).
#[derive(Debug)]
pub struct Passes {
    memo: Option<Memo>,
    resync: Duration,
}

impl Passes {
    /// Nothing kept yet: the first pass is full, and one in every `resync` after it.
    pub fn new(resync: Duration) -> Self {
        Self { memo: None, resync }
    }

    /// Drops what was kept, so the next pass is full (after leadership changed hands).
    pub fn forget(&mut self) {
        self.memo = None;
    }

    /// Marks `namespaces` (where writes were refused) as changed, so the next pass decides
    /// them again.
    pub fn refused(&mut self, namespaces: &std::collections::BTreeSet<String>) {
        if let Some(memo) = &mut self.memo
            && !memo.forget_namespaces(namespaces)
        {
            self.memo = None;
        }
    }
}

/// Decides (incrementally when it can, see [`super::incremental`]) and writes. A pass whose
/// writes failed is forgotten: the next one is full.
pub async fn reconcile_once(
    writer: &Writer,
    observed: &Observed,
    ctx: &RenderContext,
    rng: &mut (dyn CryptoRng + Send),
    overlay: &mut WriteOverlay,
    passes: &mut Passes,
    traces: Option<&crate::telemetry::Traces>,
) -> Result<(Decision, WriteOutcome), ReconcileError> {
    use crate::telemetry::operator as trace;
    use opentelemetry::context::FutureExt as _;
    let render = traces.map(|traces| trace::span(traces, "dgidgi.render"));
    let decided = decide_incrementally(observed, ctx, rng, &mut passes.memo, passes.resync);
    if decided.is_err() {
        passes.forget();
    }

    if let Some(context) = &render {
        let writes = decided.as_ref().map_or(0, |(d, _)| d.writes.len());
        let not_ready = decided.as_ref().map_or(0, |(d, _)| d.not_ready);
        trace::end(
            context,
            &[
                ("dgidgi.writes_planned", writes),
                ("dgidgi.not_ready", not_ready),
            ],
            decided.is_err(),
        );
    }
    let (decision, kind) = decided?;
    if decision.key_ring_generated {
        tracing::info!("no master key ring found; generating one");
    }
    let apply = traces.map(|traces| trace::span(traces, "dgidgi.apply"));
    let writing = writer.write_all(&decision.writes, overlay, Instant::now());
    let outcome = match &apply {
        Some(context) => writing.with_context(context.clone()).await,
        None => writing.await,
    };
    if let Some(context) = &apply {
        let counts = [
            ("dgidgi.writes_done", outcome.done),
            ("dgidgi.writes_failed", outcome.failed.len()),
        ];
        trace::end(context, &counts, !outcome.failed.is_empty());
    }
    if !outcome.failed.is_empty() {
        // What was refused is decided again by the next pass (its namespaces count as changed;
        // a refusal in the platform namespace makes it a full pass). Forgetting everything
        // would let one tenant whose writes are always refused make every pass a full one.
        passes.refused(&outcome.failed_namespaces);
    }
    tracing::info!(
        writes = decision.writes.len(),
        done = outcome.done,
        failed = outcome.failed.len(),
        not_ready = decision.not_ready,
        pass = ?kind,
        "reconciled"
    );
    Ok((decision, outcome))
}
