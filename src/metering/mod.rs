//! Limits, budgets and metering (DESIGN §2 "Reserve, then settle", §6, §7): the pure planning of
//! what a request reserves and settles to ([`plan`], [`charge`], [`clock`]), the counter stores
//! that execute it atomically — embedded ([`book`]) or shared by every replica ([`redis`]) — the
//! durable ledger ([`ledger`]), and the facade the request path calls ([`meter`]).

pub mod book;
pub mod charge;
pub mod clock;
pub mod ledger;
pub mod meter;
mod outcome;
pub mod plan;
pub mod rebuild;
pub mod redis;
pub mod refusals;
pub mod request_id;

pub use meter::{FailMode, Meter, MeterOptions, Refused, STOP_GRACE, Served, Ticket};
pub use outcome::Outcome;
