//! The aggregator: folds events' `data` objects into one state, field by field, with tagged
//! values. Pure (no I/O): the server runs it for `AGG`, and client libraries reuse it to fold
//! events they read themselves.
//!
//! # Semantics (the seed's `foldl`/`foldr`/`finalize`)
//! Each event contributes its `data`, which should be a JSON object; any other `data` (a
//! number, string, array, `null`) is skipped. Each top-level field of `data` is applied to the
//! state:
//! - `{"$sum": n}` with a numeric `n` stores `{"$sum": current + n}`, where `current` is the
//!   number inside a previous `{"$sum": x}` (when `x` is a number), a plain number, or 0 for
//!   anything else (absent, a string, an object, …);
//! - `{"$overwrite": v}` stores `v`, unwrapped;
//! - any other value replaces the field, including `{"$sum": <not a number>}` and nested
//!   objects (there is no deep merge, and tags inside nested objects mean nothing).
//!
//! A *tagged value* is a JSON object with exactly one key, `$sum` or `$overwrite` (the seed's
//! `{sum, N}` and `{overwrite, V}`); an object with other keys beside the tag is a plain value.
//! [`finalize`] replaces every top-level tagged value of the state by the value inside it.
//!
//! # Numbers
//! Two integers add exactly when the sum fits in an `i64` or `u64`; otherwise, or when either
//! is a float, they add as `f64`. A float sum that overflows to infinity becomes `null` (JSON
//! has no infinity), which a later `$sum` treats as 0.
//!
//! # Folding from a snapshot
//! The fold of events `a ++ b` equals the fold of `b` starting from the (not finalized) fold of
//! `a`. So a snapshot whose `data` is the unfinalized state (`AGG <stream> raw`) lets `AGG …
//! from_snapshot` give exactly what a fold over the whole stream gives. A finalized state works
//! too, unless a field holds a tagged value wrapped in another tag (such as
//! `{"$overwrite": {"$sum": 1}}`), which finalizing unwraps one level further.

use serde_json::{Map, Number, Value};

/// The key of a summing tagged value: `{"$sum": n}`.
pub const SUM_TAG: &str = "$sum";
/// The key of an overwriting tagged value: `{"$overwrite": v}`.
pub const OVERWRITE_TAG: &str = "$overwrite";

/// The folded state: a JSON object whose fields may hold tagged values until finalized.
pub type State = Map<String, Value>;

/// The order events are folded in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FoldOrder {
    /// Oldest to newest (`foldl`), the usual order: newer events win.
    Left,
    /// Newest to oldest (`foldr`): older events win.
    Right,
}

/// A top-level tagged value.
enum Tagged<'a> {
    Sum(&'a Value),
    Overwrite(&'a Value),
}

fn tagged(value: &Value) -> Option<Tagged<'_>> {
    let Value::Object(map) = value else {
        return None;
    };
    if map.len() != 1 {
        return None;
    }
    let (key, inner) = map.iter().next().expect("one entry");
    match key.as_str() {
        SUM_TAG => Some(Tagged::Sum(inner)),
        OVERWRITE_TAG => Some(Tagged::Overwrite(inner)),
        _ => None,
    }
}

/// `{"$sum": value}`.
pub fn sum_value(value: Value) -> Value {
    let mut map = Map::with_capacity(1);
    map.insert(SUM_TAG.to_owned(), value);
    Value::Object(map)
}

/// The state a fold starts from: a snapshot's `data` when it is an object, else `{}`.
pub fn initial_state(snapshot_data: Option<&Value>) -> State {
    match snapshot_data {
        Some(Value::Object(map)) => map.clone(),
        _ => State::new(),
    }
}

/// Applies one event's `data` to `state` (skipped unless it is an object).
pub fn apply_data(state: &mut State, data: &Value) {
    let Value::Object(fields) = data else {
        return;
    };
    for (field, value) in fields {
        let new_value = match tagged(value) {
            Some(Tagged::Sum(Value::Number(n))) => {
                let current = state.get(field).and_then(sum_operand);
                sum_value(add(current, n))
            }
            Some(Tagged::Overwrite(inner)) => inner.clone(),
            // `{"$sum": <not a number>}` and every plain value replace the field.
            Some(Tagged::Sum(_)) | None => value.clone(),
        };
        state.insert(field.clone(), new_value);
    }
}

/// The number a `$sum` adds to: a plain number, or the number inside a previous sum.
fn sum_operand(value: &Value) -> Option<&Number> {
    match value {
        Value::Number(n) => Some(n),
        _ => match tagged(value) {
            Some(Tagged::Sum(Value::Number(n))) => Some(n),
            _ => None,
        },
    }
}

fn as_integer(n: &Number) -> Option<i128> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

/// `current + n` (`current` absent = 0), exact for integers that fit, else as `f64`.
fn add(current: Option<&Number>, n: &Number) -> Value {
    let Some(current) = current else {
        return Value::Number(n.clone());
    };
    if let (Some(a), Some(b)) = (as_integer(current), as_integer(n)) {
        let sum = a + b; // Cannot overflow: both fit in 65 bits.
        if let Ok(small) = i64::try_from(sum) {
            return Value::Number(small.into());
        }
        if let Ok(large) = u64::try_from(sum) {
            return Value::Number(large.into());
        }
    }
    let sum = current.as_f64().unwrap_or(0.0) + n.as_f64().unwrap_or(0.0);
    Number::from_f64(sum).map_or(Value::Null, Value::Number)
}

/// Folds `events` (each event's `data`) oldest to newest, starting from `state`.
pub fn foldl<'a>(mut state: State, events: impl IntoIterator<Item = &'a Value>) -> State {
    for data in events {
        apply_data(&mut state, data);
    }
    state
}

/// Folds `events` (given oldest first) newest to oldest, starting from `state`.
pub fn foldr<'a, I>(state: State, events: I) -> State
where
    I: IntoIterator<Item = &'a Value>,
    I::IntoIter: DoubleEndedIterator,
{
    foldl(state, events.into_iter().rev())
}

/// Folds in the given order.
pub fn fold<'a, I>(order: FoldOrder, state: State, events: I) -> State
where
    I: IntoIterator<Item = &'a Value>,
    I::IntoIter: DoubleEndedIterator,
{
    match order {
        FoldOrder::Left => foldl(state, events),
        FoldOrder::Right => foldr(state, events),
    }
}

/// Replaces each top-level tagged value by the value inside it.
pub fn finalize(state: State) -> State {
    state
        .into_iter()
        .map(|(field, value)| {
            let value = match tagged(&value) {
                Some(Tagged::Sum(inner) | Tagged::Overwrite(inner)) => inner.clone(),
                None => value,
            };
            (field, value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn state(value: Value) -> State {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    fn foldl_values(init: Value, events: &[Value]) -> State {
        foldl(state(init), events)
    }

    #[test]
    fn sums_of_1_5_minus_2_finalize_to_4() {
        let events = [
            json!({"n": {"$sum": 1}}),
            json!({"n": {"$sum": 5}}),
            json!({"n": {"$sum": -2}}),
        ];
        let raw = foldl_values(json!({}), &events);
        assert_eq!(Value::Object(raw.clone()), json!({"n": {"$sum": 4}}));
        assert_eq!(Value::Object(finalize(raw)), json!({"n": 4}));
    }

    #[test]
    fn a_plain_initial_number_is_summed_onto() {
        let raw = foldl_values(json!({"n": 5}), &[json!({"n": {"$sum": 10}})]);
        assert_eq!(Value::Object(raw.clone()), json!({"n": {"$sum": 15}}));
        assert_eq!(Value::Object(finalize(raw)), json!({"n": 15}));
    }

    #[test]
    fn a_sum_over_a_non_number_starts_from_zero() {
        let raw = foldl_values(json!({"n": "five"}), &[json!({"n": {"$sum": 2}})]);
        assert_eq!(Value::Object(raw), json!({"n": {"$sum": 2}}));
    }

    #[test]
    fn overwrite_stores_the_value_unwrapped() {
        let events = [
            json!({"n": {"$sum": 3}}),
            json!({"n": {"$overwrite": {"a": 1}}}),
        ];
        let raw = foldl_values(json!({}), &events);
        assert_eq!(Value::Object(raw), json!({"n": {"a": 1}}));
        let raw = foldl_values(
            json!({}),
            &[json!({"n": {"$overwrite": 7}}), json!({"n": {"$sum": 1}})],
        );
        assert_eq!(Value::Object(finalize(raw)), json!({"n": 8}));
    }

    #[test]
    fn plain_values_and_nested_objects_replace_without_merging() {
        let events = [
            json!({"user": {"name": "Ada", "age": 36}, "tags": [1]}),
            json!({"user": {"name": "Bob", "n": {"$sum": 1}}}),
        ];
        let raw = foldl_values(json!({}), &events);
        // No deep merge, and a tag inside a nested object is a plain value.
        let expected = json!({"user": {"name": "Bob", "n": {"$sum": 1}}, "tags": [1]});
        assert_eq!(Value::Object(raw.clone()), expected);
        assert_eq!(Value::Object(finalize(raw)), expected);
    }

    #[test]
    fn objects_with_more_than_the_tag_are_plain_values() {
        let raw = foldl_values(json!({"n": 1}), &[json!({"n": {"$sum": 2, "x": 0}})]);
        assert_eq!(
            Value::Object(finalize(raw)),
            json!({"n": {"$sum": 2, "x": 0}})
        );
    }

    #[test]
    fn a_sum_of_a_non_number_replaces_and_finalizes_to_its_inner_value() {
        let raw = foldl_values(json!({"n": 1}), &[json!({"n": {"$sum": "x"}})]);
        assert_eq!(Value::Object(raw.clone()), json!({"n": {"$sum": "x"}}));
        assert_eq!(Value::Object(finalize(raw)), json!({"n": "x"}));
    }

    #[test]
    fn foldr_goes_newest_to_oldest() {
        let events = [json!({"a": 1, "b": 1}), json!({"a": 2})];
        assert_eq!(
            Value::Object(foldl(State::new(), &events)),
            json!({"a": 2, "b": 1})
        );
        assert_eq!(
            Value::Object(foldr(State::new(), &events)),
            json!({"a": 1, "b": 1})
        );
        let sums = [json!({"s": {"$sum": 1}}), json!({"s": {"$sum": 2}})];
        assert_eq!(
            Value::Object(finalize(fold(FoldOrder::Right, State::new(), &sums))),
            json!({"s": 3})
        );
    }

    #[test]
    fn non_object_data_is_skipped() {
        let events = [
            json!({"a": 1}),
            json!(5),
            json!(null),
            json!([{"a": 2}]),
            json!("a"),
        ];
        assert_eq!(Value::Object(foldl(State::new(), &events)), json!({"a": 1}));
    }

    #[test]
    fn initial_state_is_the_snapshot_data_when_an_object() {
        assert_eq!(
            initial_state(Some(&json!({"a": 1}))),
            state(json!({"a": 1}))
        );
        assert_eq!(initial_state(Some(&json!([1]))), State::new());
        assert_eq!(initial_state(None), State::new());
    }

    #[test]
    fn integers_add_exactly_and_overflow_to_floats() {
        let big = u64::MAX - 1;
        let raw = foldl_values(json!({"n": big}), &[json!({"n": {"$sum": 1}})]);
        assert_eq!(Value::Object(finalize(raw)), json!({"n": u64::MAX}));
        let raw = foldl_values(json!({"n": i64::MIN}), &[json!({"n": {"$sum": -1}})]);
        assert_eq!(finalize(raw)["n"], json!(i64::MIN as f64 - 1.0));
        let raw = foldl_values(json!({"n": 1}), &[json!({"n": {"$sum": 0.5}})]);
        assert_eq!(Value::Object(finalize(raw)), json!({"n": 1.5}));
        let raw = foldl_values(json!({"n": f64::MAX}), &[json!({"n": {"$sum": f64::MAX}})]);
        assert_eq!(Value::Object(finalize(raw)), json!({"n": null}));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn plain() -> impl Strategy<Value = Value> {
            prop_oneof![
                (-1000i64..1000).prop_map(Value::from),
                (-400i32..400).prop_map(|q| Value::from(f64::from(q) / 4.0)),
                "[a-z]{0,3}".prop_map(Value::from),
                Just(Value::Null),
                (-9i64..9).prop_map(|n| json!({"nested": n})),
            ]
        }

        fn field_value() -> impl Strategy<Value = Value> {
            prop_oneof![
                3 => (-1000i64..1000).prop_map(|n| json!({"$sum": n})),
                1 => (-400i32..400).prop_map(|q| json!({"$sum": f64::from(q) / 4.0})),
                2 => plain(),
                1 => plain().prop_map(|v| json!({"$overwrite": v})),
            ]
        }

        fn event_data() -> impl Strategy<Value = Value> {
            prop_oneof![
                9 => proptest::collection::btree_map("[a-d]", field_value(), 0..4)
                    .prop_map(|fields| Value::Object(fields.into_iter().collect())),
                1 => plain(),
            ]
        }

        proptest! {
            /// Folding from the (raw or finalized) state of a prefix equals folding everything.
            #[test]
            fn folding_from_a_prefix_state_equals_folding_everything(
                events in proptest::collection::vec(event_data(), 0..40),
                split in 0usize..41,
            ) {
                let split = split.min(events.len());
                let (prefix, suffix) = events.split_at(split);
                let whole = finalize(foldl(State::new(), &events));
                let raw_prefix = foldl(State::new(), prefix);
                let from_raw = foldl(raw_prefix.clone(), suffix);
                prop_assert_eq!(&finalize(from_raw), &whole);
                let from_final = foldl(finalize(raw_prefix), suffix);
                prop_assert_eq!(&finalize(from_final), &whole);
            }

            /// `foldr` is `foldl` over the reversed events.
            #[test]
            fn foldr_is_foldl_reversed(events in proptest::collection::vec(event_data(), 0..20)) {
                let reversed: Vec<Value> = events.iter().rev().cloned().collect();
                prop_assert_eq!(foldr(State::new(), &events), foldl(State::new(), &reversed));
            }
        }
    }
}
