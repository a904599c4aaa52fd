//! Order-preserving key encoding.
//!
//! A table's primary key `(v1, v2, ...)` encodes to bytes whose lexicographic
//! order equals the SQL order of the tuples, so sled range scans come back
//! sorted. Every value is self-delimiting, so a tuple encoding is never a
//! prefix of a different tuple's encoding of the same arity, and a leading
//! subset of key columns is a scan prefix. The same bytes, for one value, are
//! the canonical form the hash ring hashes: all integer widths encode alike.
//!
//! Stored keys append an 8-byte version, `!commit_ts` big-endian, so the newest
//! version of a row sorts first and an MVCC reader at snapshot `T` finds its
//! version with one seek.

use rust_decimal::Decimal;

use crate::value::Value;

const TAG_BOOL: u8 = 0x10;
const TAG_INT: u8 = 0x20;
const TAG_FLOAT: u8 = 0x28;
const TAG_NUMERIC: u8 = 0x30;
const TAG_TEXT: u8 = 0x40;
const TAG_BYTES: u8 = 0x48;
const TAG_DATE: u8 = 0x50;
const TAG_TIMESTAMP: u8 = 0x58;
const TAG_UUID: u8 = 0x60;
const TAG_NULL: u8 = 0xF0;

/// Length of the version suffix on stored keys.
pub const VERSION_LEN: usize = 8;

/// Appends the order-preserving encoding of `v` to `out`.
pub fn encode_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.push(TAG_NULL),
        Value::Bool(b) => {
            out.push(TAG_BOOL);
            out.push(*b as u8);
        }
        Value::Int2(_) | Value::Int4(_) | Value::Int8(_) => {
            out.push(TAG_INT);
            let n = v.as_i64().unwrap_or(0);
            out.extend_from_slice(&((n as u64) ^ (1 << 63)).to_be_bytes());
        }
        Value::Float8(_) | Value::Float4(_) => {
            out.push(TAG_FLOAT);
            let f = match v {
                Value::Float4(f) => *f as f64,
                Value::Float8(f) => *f,
                _ => 0.0,
            };
            let f = if f == 0.0 {
                0.0
            } else if f.is_nan() {
                f64::NAN
            } else {
                f
            };
            let bits = f.to_bits();
            let ordered = if bits >> 63 == 1 {
                !bits
            } else {
                bits ^ (1 << 63)
            };
            out.extend_from_slice(&ordered.to_be_bytes());
        }
        Value::Numeric(d) => {
            out.push(TAG_NUMERIC);
            encode_decimal(out, *d);
        }
        Value::Text(_) | Value::Bytea(_) => {
            let bytes = match v {
                Value::Text(s) => {
                    out.push(TAG_TEXT);
                    s.as_bytes()
                }
                Value::Bytea(b) => {
                    out.push(TAG_BYTES);
                    b.as_slice()
                }
                _ => &[],
            };
            for &b in bytes {
                if b == 0 {
                    out.extend_from_slice(&[0x00, 0xFF]);
                } else {
                    out.push(b);
                }
            }
            out.extend_from_slice(&[0x00, 0x01]);
        }
        Value::Date(d) => {
            out.push(TAG_DATE);
            out.extend_from_slice(&((*d as u32) ^ (1 << 31)).to_be_bytes());
        }
        Value::Timestamp(t) | Value::Timestamptz(t) => {
            out.push(TAG_TIMESTAMP);
            out.extend_from_slice(&((*t as u64) ^ (1 << 63)).to_be_bytes());
        }
        Value::Uuid(u) => {
            out.push(TAG_UUID);
            out.extend_from_slice(u);
        }
    }
}

/// Decimal as sign, exponent and digit string: `0.d1d2.. x 10^e`. Negative
/// numbers invert every byte so larger magnitudes sort first.
fn encode_decimal(out: &mut Vec<u8>, d: Decimal) {
    let d = d.normalize();
    if d.is_zero() {
        out.push(0x80);
        return;
    }
    let digits = d.mantissa().unsigned_abs().to_string();
    let digits = digits.trim_end_matches('0');
    // value = 0.<digits> * 10^exp
    let exp = d.mantissa().unsigned_abs().to_string().len() as i32 - d.scale() as i32;
    let exp_byte = (exp + 128) as u8;
    let neg = d.is_sign_negative();
    let flip = |b: u8| if neg { !b } else { b };
    out.push(if neg { 0x40 } else { 0xC0 });
    out.push(flip(exp_byte));
    for c in digits.bytes() {
        out.push(flip(c - b'0' + 1));
    }
    out.push(flip(0x00));
}

/// Length of the first encoded value in `bytes` (values are
/// self-delimiting); `None` if `bytes` does not start with a whole value.
pub fn encoded_len(bytes: &[u8]) -> Option<usize> {
    let fixed = |n: usize| (bytes.len() >= n).then_some(n);
    match *bytes.first()? {
        TAG_NULL => Some(1),
        TAG_BOOL => fixed(2),
        TAG_INT | TAG_FLOAT | TAG_TIMESTAMP => fixed(9),
        TAG_DATE => fixed(5),
        TAG_UUID => fixed(17),
        TAG_NUMERIC => match *bytes.get(1)? {
            0x80 => Some(2),
            // Sign, exponent, digits, then the terminator (inverted for
            // negative numbers, whose digit bytes never reach 0xFF).
            sign => {
                let end = if sign == 0x40 { 0xFF } else { 0x00 };
                let at = bytes.get(3..)?.iter().position(|&b| b == end)?;
                Some(3 + at + 1)
            }
        },
        TAG_TEXT | TAG_BYTES => {
            let mut i = 1;
            loop {
                match (bytes.get(i)?, bytes.get(i + 1)) {
                    (0x00, Some(0x01)) => return Some(i + 2),
                    (0x00, Some(_)) => i += 2,
                    (0x00, None) => return None,
                    _ => i += 1,
                }
            }
        }
        _ => None,
    }
}

/// The smallest key above every key that starts with `prefix`, or `None`
/// when there is none (a prefix of 0xFF bytes).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Encodes a key tuple.
pub fn encode_key(values: &[Value]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 * values.len());
    for v in values {
        encode_value(&mut out, v);
    }
    out
}

/// Canonical bytes of one shard-key value, as hashed by the ring.
pub fn canonical(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    encode_value(&mut out, v);
    out
}

/// Stored key: encoded primary key followed by the descending version.
pub fn versioned_key(pk: &[u8], ts: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(pk.len() + VERSION_LEN);
    k.extend_from_slice(pk);
    k.extend_from_slice(&(!ts).to_be_bytes());
    k
}

/// Splits a stored key into its primary-key bytes and version timestamp.
pub fn split_versioned(key: &[u8]) -> Option<(&[u8], u64)> {
    if key.len() < VERSION_LEN {
        return None;
    }
    let (pk, ver) = key.split_at(key.len() - VERSION_LEN);
    let ts = !u64::from_be_bytes(ver.try_into().ok()?);
    Some((pk, ts))
}

#[cfg(test)]
mod encoded_len_tests {
    use super::*;
    use rust_decimal::Decimal;
    use std::str::FromStr;

    #[test]
    fn every_encoded_value_measures_its_own_length() {
        let values = vec![
            Value::Null,
            Value::Bool(true),
            Value::Int8(-7),
            Value::Float8(2.5),
            Value::Numeric(Decimal::ZERO),
            Value::Numeric(Decimal::from_str("123.45").unwrap()),
            Value::Numeric(Decimal::from_str("-0.0099").unwrap()),
            Value::Text("plain".into()),
            Value::Text("with\u{0}nul".into()),
            Value::Bytea(vec![0, 1, 0, 255]),
            Value::Date(19_000),
            Value::Timestamp(-5),
            Value::Uuid([7; 16]),
        ];
        for v in &values {
            let mut enc = encode_key(std::slice::from_ref(v));
            let n = enc.len();
            enc.extend_from_slice(&[0x20, 1, 2, 3]);
            assert_eq!(encoded_len(&enc), Some(n), "{v:?}");
        }
        assert_eq!(prefix_end(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xFF]), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<i64>().prop_map(Value::Int8),
            any::<i32>().prop_map(Value::Int4),
            "[a-z\\x00]{0,6}".prop_map(Value::Text),
            (any::<i64>(), 0u32..10).prop_map(|(m, s)| Value::Numeric(Decimal::new(m, s))),
            any::<f64>()
                .prop_filter("nan", |f| !f.is_nan())
                .prop_map(Value::Float8),
            any::<i32>().prop_map(|d| Value::Date(d / 4)),
            any::<bool>().prop_map(Value::Bool),
        ]
    }

    proptest! {
        #[test]
        fn encoding_preserves_order(a in arb_value(), b in arb_value()) {
            let comparable = std::mem::discriminant(&a) == std::mem::discriminant(&b)
                || (a.as_i64().is_some() && b.as_i64().is_some());
            if comparable {
                let ord = a.sql_cmp(&b).unwrap().unwrap();
                prop_assert_eq!(canonical(&a).cmp(&canonical(&b)), ord,
                    "{:?} vs {:?}", a, b);
            }
        }

        #[test]
        fn tuple_order_is_lexicographic(a in ("[a-c]{0,3}", any::<i16>()), b in ("[a-c]{0,3}", any::<i16>())) {
            let ka = encode_key(&[Value::Text(a.0.clone()), Value::Int2(a.1)]);
            let kb = encode_key(&[Value::Text(b.0.clone()), Value::Int2(b.1)]);
            prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
        }
    }

    #[test]
    fn integer_widths_share_canonical_form() {
        assert_eq!(canonical(&Value::Int2(7)), canonical(&Value::Int8(7)));
    }

    #[test]
    fn newest_version_sorts_first() {
        let pk = encode_key(&[Value::Int4(1)]);
        let old = versioned_key(&pk, 10);
        let new = versioned_key(&pk, 20);
        assert!(new < old);
        assert_eq!(split_versioned(&new), Some((&pk[..], 20)));
    }
}
