//! `(snapshot, domid)` → what the runtime replica says about that domain.
//!
//! [`libxl_list`] reproduces libxl 4.17's own reading (its `from_xenstore` functions);
//! [`evidence`] gathers the wider lifecycle evidence the no-loss policy classifies.

pub mod evidence;
pub mod host;
pub mod libxl_list;
pub mod xs;
