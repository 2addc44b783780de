//! Partial matching of a JSON pattern against an event record: the one definition behind
//! `event_payload` subscriptions and the `payload` criterion of append conditions, so both
//! match alike.
//!
//! An object matches an object that has every key of the pattern with a matching value (other
//! keys are ignored; objects nest); an array matches an array of the same length element by
//! element; numbers match by numeric value (`1` matches `1.0`); strings, booleans and null
//! match by equality; a missing key never matches, not even `null`.

use serde_json::Value;

/// Whether `pattern` partially matches `value` (see the module doc).
pub fn partial_match(pattern: &Value, value: &Value) -> bool {
    match (pattern, value) {
        (Value::Object(wanted), Value::Object(actual)) => wanted
            .iter()
            .all(|(key, sub)| actual.get(key).is_some_and(|v| partial_match(sub, v))),
        (Value::Array(wanted), Value::Array(actual)) => {
            wanted.len() == actual.len()
                && wanted.iter().zip(actual).all(|(w, a)| partial_match(w, a))
        }
        (Value::Number(wanted), Value::Number(actual)) => {
            match (wanted.as_i64(), actual.as_i64()) {
                (Some(w), Some(a)) => w == a,
                _ => wanted.as_f64() == actual.as_f64(),
            }
        }
        (wanted, actual) => wanted == actual,
    }
}
