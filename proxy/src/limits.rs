//! The bounds fortress keeps on what one client can make it hold, in one
//! place: how deep a statement may nest and the stack sized for it, and
//! how many prepared statements a session may keep. The
//! size bounds of a statement, a COPY and the result cache live with what
//! they bound (`sql::MAX_STATEMENT_BYTES`, `copy::MAX_COPY_BYTES`).

/// Stack of every thread that parses, binds, plans or evaluates a client's
/// statement: the connection threads, their blocking pools and the shards'
/// scan threads. A statement within `sql::lex::MAX_CHAIN` is a tree at most
/// 20,000 levels deep. Our passes with large frames (binding, evaluation)
/// grow onto new segments as they need (`fortress_storage::stack`); the
/// derived ones (clone, compare, drop) recurse on this stack, which gives
/// each level over 3 KiB. The memory is reserved, not committed: a thread
/// touches only the pages its deepest statement needs.
pub const THREAD_STACK_BYTES: usize = 64 << 20;

/// Named prepared statements one session may hold (53200 past it). One
/// costs some 15 KiB (measured: 20,000 SELECTs with a WHERE added 308 MiB
/// in a debug build), so a session's statements stay near 150 MiB; they
/// are freed when it ends, or by Close and DEALLOCATE.
pub const MAX_PREPARED_PER_SESSION: usize = 10_000;
