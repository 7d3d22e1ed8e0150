//! Rule kinds with maths of their own, one file each.

pub(crate) mod outlier;
pub(crate) mod slo;
