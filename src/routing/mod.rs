//! Pure routing logic shared by render (to validate policies) and the gateway (to decide).

pub mod glob;
pub mod plan;
