//! The repair plan: ordered steps that bring the two replicas back into agreement.
//! Placeholder while the no-loss policy is written.

/// An ordered repair plan.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub steps: Vec<String>,
}
