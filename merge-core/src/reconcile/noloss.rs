//! The no-loss policy. Placeholder: runs the libxl view until written.
use super::{Inputs, Outcome, Policy};

pub fn reconcile(inputs: Inputs<'_>) -> Outcome {
    let mut o = super::libxl417::retrieve(inputs);
    o.policy = Policy::NoLoss;
    o
}
