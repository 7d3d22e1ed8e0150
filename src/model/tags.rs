//! Tag sets: the dimension tags of an object, sorted by key.

use std::collections::BTreeMap;

/// A tag set, sorted by key.
pub type Tags = BTreeMap<String, String>;
