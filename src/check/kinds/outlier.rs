//! Outliers among the objects of one check (placeholder until written).
