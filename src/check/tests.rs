//! Stepped check tests.
