//! Routing: the consistent-hash ring and the rules that map a statement's
//! predicates onto the shards that can hold its rows.

pub mod placement;
pub mod ring;
pub mod router;
