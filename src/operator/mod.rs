//! The control plane: watches the custom resources, the Secrets they name and the Namespaces,
//! renders them with the same pure [`crate::render::render`] as `dgidgi render`, and writes the
//! outcome back to the cluster.
//!
//! Deciding is apart from writing: [`observed`] turns the reflector stores into render's input,
//! [`plan`] compares what render wants with what the stores hold and returns a list of
//! [`plan::Write`]s (pure, tested without I/O), and [`writer`] performs them. [`reconcile`]
//! glues the three together for one pass; [`controller`] runs the watches and decides when to
//! pass.

pub mod controller;
pub mod incremental;
pub mod leader;
pub mod metrics;
pub mod observed;
pub mod plan;
pub mod platform;
pub mod reconcile;
pub mod server;
pub mod usage;
pub mod writer;

/// The one field manager for every server-side apply, so ownership of fields stays in one
/// place and `kubectl` edits of fields we own are visible as conflicts.
pub const FIELD_MANAGER: &str = "dgidgi-operator";

/// The Lease in the platform namespace that elects the one writing replica.
pub const LEASE_NAME: &str = "dgidgi-operator";

/// The controller name on Events, as `kubectl describe` shows it.
pub const REPORTER: &str = "dgidgi-operator";
