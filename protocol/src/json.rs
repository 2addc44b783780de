//! The one definition of acceptable JSON in an event or a snapshot.
//!
//! `APPEND` and `SNAP SAVE` check every `data` and `metadata` value with [`check`] before
//! anything is written, and every later reader (`AGG`'s fold, `event_payload` matching, a
//! snapshot load) parses stored records with [`parse_record`], which applies exactly the same
//! rules. So a record the door let in is one every reader can read; a record that breaks them
//! anyway (written by an older version, or by a disk that lies) is reported by the reader as
//! unreadable, with the rule and where it broke, and never silently passed over.
//!
//! The rules (PROTOCOL.md, "The event record"):
//! - arrays and objects nest at most [`MAX_JSON_DEPTH`] levels (a scalar is depth 0, `[]` 1);
//! - every number is a finite IEEE-754 double once parsed (`1e400` is refused; `1e-400` reads
//!   as 0, as in every JSON parser);
//! - strings (keys too) are valid Unicode: escapes are well formed and surrogates come in pairs;
//! - and everything RFC 8259 asks (no trailing commas, no control characters in strings, …).
//!
//! serde_json's own recursion limit (128 levels, counted from the outermost value) is switched
//! off because the records wrapping `data` add levels of their own; the depth is bounded here
//! instead, so parsing stays within a small, fixed stack.

use std::fmt;

use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};

/// Deepest nesting of arrays and objects in an event's `data` or `metadata`, or a snapshot's
/// `data`. Deep enough for any document a person designs; shallow enough that recursive
/// readers (the fold, the payload matcher, clients in other languages, whose parsers often
/// stop near 100-1000 levels) never run out of stack.
pub const MAX_JSON_DEPTH: usize = 128;

/// Levels a stored record adds around the `data` it carries (the record object itself).
pub const RECORD_WRAPPER_DEPTH: usize = 1;

/// Why a JSON value was refused: the rule it broke and where (serde_json's line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonRuleError(pub String);

impl fmt::Display for JsonRuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks that `text` is one JSON value within the rules, nesting at most `max_depth`.
pub fn check(text: &[u8], max_depth: usize) -> Result<(), JsonRuleError> {
    let mut deserializer = serde_json::Deserializer::from_slice(text);
    deserializer.disable_recursion_limit();
    Checker {
        depth: 0,
        max_depth,
    }
    .deserialize(&mut deserializer)
    .and_then(|()| deserializer.end())
    .map_err(explain)
}

/// serde_json's message, with the rule named where its own words do not say it.
fn explain(error: serde_json::Error) -> JsonRuleError {
    let message = error.to_string();
    if message.contains("escape") && !message.contains("surrogate") {
        return JsonRuleError(format!(
            "strings must be valid Unicode (a \\u escape is malformed, or a surrogate is \
             unpaired): {message}"
        ));
    }
    JsonRuleError(message)
}

/// Applies the rules to one value of an `APPEND` or `SNAP SAVE` payload, naming the value
/// (`what`, e.g. `event 2: data`) in the `invalid_json` error.
pub fn check_payload_value(
    what: &str,
    value: &serde_json::value::RawValue,
) -> Result<(), crate::ProtocolError> {
    check(value.get().as_bytes(), MAX_JSON_DEPTH)
        .map_err(|e| crate::ProtocolError::invalid_json(format!("{what}: {e}")))
}

/// Parses a stored record (an object wrapping event or snapshot `data`) under the same rules
/// the door applied to that `data`.
pub fn parse_record(record: &[u8]) -> Result<serde_json::Value, JsonRuleError> {
    check(record, MAX_JSON_DEPTH + RECORD_WRAPPER_DEPTH)?;
    let mut deserializer = serde_json::Deserializer::from_slice(record);
    // Safe: `check` bounded the depth just above.
    deserializer.disable_recursion_limit();
    serde::Deserialize::deserialize(&mut deserializer).map_err(|e| JsonRuleError(e.to_string()))
}

/// Walks a value without keeping it: serde_json parses every number and string while the
/// visitor counts the depth.
struct Checker {
    depth: usize,
    max_depth: usize,
}

impl Checker {
    fn nested<E: serde::de::Error>(&self) -> Result<Checker, E> {
        if self.depth >= self.max_depth {
            return Err(E::custom(format!(
                "arrays and objects nest deeper than {} levels",
                self.max_depth
            )));
        }
        Ok(Checker {
            depth: self.depth + 1,
            max_depth: self.max_depth,
        })
    }

    fn child(&self) -> Checker {
        Checker {
            depth: self.depth,
            max_depth: self.max_depth,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Checker {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Checker {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<(), E> {
        // serde_json already refuses overflow; this keeps the rule explicit.
        if value.is_finite() {
            Ok(())
        } else {
            Err(E::custom("number is not a finite double"))
        }
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let element = self.nested()?;
        while seq.next_element_seed(element.child())?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let member = self.nested()?;
        while map.next_key_seed(member.child())?.is_some() {
            map.next_value_seed(member.child())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn depth_edges() {
        assert!(check(b"1", 0).is_ok());
        assert!(check(b"[]", 0).is_err());
        assert!(check(nested(127).as_bytes(), MAX_JSON_DEPTH).is_ok());
        assert!(check(nested(128).as_bytes(), MAX_JSON_DEPTH).is_ok());
        let error = check(nested(129).as_bytes(), MAX_JSON_DEPTH).unwrap_err();
        assert!(error.0.contains("deeper than 128"), "{error}");
        let objects = format!("{}1{}", r#"{"a":"#.repeat(129), "}".repeat(129));
        assert!(check(objects.as_bytes(), MAX_JSON_DEPTH).is_err());
        // 100k levels: refused without exhausting the stack.
        assert!(check(nested(100_000).as_bytes(), MAX_JSON_DEPTH).is_err());
    }

    #[test]
    fn number_edges() {
        for ok in [
            "1.7976931348623157e308",
            "-1.7976931348623157e308",
            "5e-324",
            "2.2250738585072014e-308",
            "1e-400",
            "18446744073709551616",
            "-9223372036854775809",
            "0",
            "-0.0",
        ] {
            assert!(check(ok.as_bytes(), 0).is_ok(), "{ok}");
        }
        for bad in ["1e400", "-1e400", "1.8e308", "[1e309]", r#"{"x":1e999}"#] {
            let error = check(bad.as_bytes(), 2).unwrap_err();
            assert!(error.0.contains("number out of range"), "{bad}: {error}");
        }
    }

    #[test]
    fn string_edges() {
        for ok in [
            r#""\ud83d\ude00""#,
            r#""\u00e9\n\t\r\b\f\/\\\"""#,
            r#""é😀""#,
            r#"{"\u0041":1}"#,
        ] {
            assert!(check(ok.as_bytes(), 1).is_ok(), "{ok}");
        }
        for bad in [
            r#""\ud800""#,
            r#""\udc00""#,
            r#""\ud800\u0041""#,
            r#""\u12""#,
            r#""\x41""#,
            r#"{"\ud800":1}"#,
            "\"a\u{1}b\"",
        ] {
            assert!(check(bad.as_bytes(), 1).is_err(), "{bad}");
        }
        assert!(check(b"\"\xff\"", 0).is_err(), "invalid UTF-8");
    }

    #[test]
    fn records_allow_one_wrapper_level() {
        let record = format!(r#"{{"data":{}}}"#, nested(MAX_JSON_DEPTH));
        assert!(parse_record(record.as_bytes()).is_ok());
        let record = format!(r#"{{"data":{}}}"#, nested(MAX_JSON_DEPTH + 1));
        assert!(parse_record(record.as_bytes()).is_err());
        assert!(parse_record(br#"{"data":1e400}"#).is_err());
        assert!(parse_record(br#"{"data":"x"} trailing"#).is_err());
    }
}
