//! One pass: snapshot → render → plan → write. The whole config is one function of the whole
//! cluster state, so there is one pass for everything rather than one per object; a bad object
//! shows up in its own status and never fails the pass.

use std::time::Instant;

use rand::CryptoRng;

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

/// Decides and writes.
pub async fn reconcile_once(
    writer: &Writer,
    observed: &Observed,
    ctx: &RenderContext,
    rng: &mut (dyn CryptoRng + Send),
    overlay: &mut WriteOverlay,
) -> Result<(Decision, WriteOutcome), ReconcileError> {
    let decision = decide(observed, ctx, rng)?;
    if decision.key_ring_generated {
        tracing::info!("no master key ring found; generating one");
    }
    let outcome = writer
        .write_all(&decision.writes, overlay, Instant::now())
        .await;
    tracing::info!(
        writes = decision.writes.len(),
        done = outcome.done,
        failed = outcome.failed.len(),
        not_ready = decision.not_ready,
        "reconciled"
    );
    Ok((decision, outcome))
}
