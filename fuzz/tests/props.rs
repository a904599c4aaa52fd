//! The fuzz targets' properties as proptests, so `cargo test` checks them
//! on stable Rust: arbitrary bytes, and valid inputs with damage done to
//! them (which reach further than random bytes do).

use fortress_storage::wal::Record;
use proptest::prelude::*;

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..600)
}

/// A valid log of a few records, then damaged: a byte flipped, cut short
/// or extended with junk.
fn damaged_log() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..6),
        any::<usize>(),
        any::<u8>(),
        0u8..4,
    )
        .prop_map(|(payloads, at, byte, how)| {
            let mut log = Vec::new();
            for (i, p) in payloads.into_iter().enumerate() {
                Record {
                    lsn: i as u64 + 1,
                    txid: 7,
                    ts: 100 + i as u64,
                    kind: 1,
                    payload: p,
                }
                .encode_into(&mut log);
            }
            let at = at % log.len();
            match how {
                0 => log[at] ^= byte | 1,
                1 => log.truncate(at),
                2 => log.extend(std::iter::repeat_n(byte, at % 50)),
                _ => {}
            }
            log
        })
}

/// A few frontend messages, well framed, with arbitrary bodies.
fn framed_messages() -> impl Strategy<Value = Vec<u8>> {
    let tags = prop_oneof![
        Just(b'Q'),
        Just(b'P'),
        Just(b'B'),
        Just(b'D'),
        Just(b'E'),
        Just(b'S'),
        Just(b'C'),
        Just(b'd'),
        Just(b'X'),
    ];
    proptest::collection::vec((tags, proptest::collection::vec(any::<u8>(), 0..60)), 1..5).prop_map(
        |msgs| {
            let mut out = vec![1u8];
            for (tag, body) in msgs {
                out.push(tag);
                out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
                out.extend_from_slice(&body);
            }
            out
        },
    )
}

/// SQL-like text: keywords, names and symbols in any order.
fn sqlish() -> impl Strategy<Value = String> {
    let word = prop_oneof![
        Just("SELECT"),
        Just("FROM"),
        Just("WHERE"),
        Just("t"),
        Just("r"),
        Just("ref"),
        Just("id"),
        Just("k"),
        Just("name"),
        Just("amount"),
        Just("day"),
        Just("*"),
        Just("("),
        Just(")"),
        Just(","),
        Just("="),
        Just("<"),
        Just("IN"),
        Just("BETWEEN"),
        Just("AND"),
        Just("OR"),
        Just("NOT"),
        Just("NULL"),
        Just("1"),
        Just("-1"),
        Just("'x'"),
        Just("15"),
        Just("ORDER BY"),
        Just("GROUP BY"),
        Just("LIMIT"),
        Just("JOIN"),
        Just("ON"),
        Just("count(*)"),
        Just("sum(amount)"),
        Just("DISTINCT"),
        Just("INSERT INTO t VALUES"),
        Just("UPDATE t SET"),
        Just("DELETE FROM"),
        Just("EXPLAIN"),
        Just("::int"),
        Just("$1"),
        Just(";"),
        Just("'2024-02-30'"),
    ];
    proptest::collection::vec(word, 0..24).prop_map(|w| w.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn router_holds_for_any_key_and_layout(data in bytes()) {
        fortress_props::router(&data);
    }

    #[test]
    fn wal_decoding_of_arbitrary_bytes(data in bytes()) {
        fortress_props::wal(&data);
    }

    #[test]
    fn wal_recovery_of_damaged_logs(data in damaged_log()) {
        fortress_props::wal(&data);
    }

    #[test]
    fn wire_messages_of_arbitrary_bytes(data in bytes()) {
        fortress_props::wire(&data);
    }

    #[test]
    fn wire_messages_well_framed(data in framed_messages()) {
        fortress_props::wire(&data);
    }

    #[test]
    fn sql_of_arbitrary_text(data in bytes()) {
        fortress_props::sql(&data);
    }

    #[test]
    fn sql_of_sql_like_text(text in sqlish()) {
        fortress_props::sql(text.as_bytes());
    }
}
