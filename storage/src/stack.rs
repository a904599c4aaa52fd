//! Recursion over client-built trees (expressions) that cannot overflow.
//!
//! A statement's depth is bounded where it is parsed (54001 past it), but
//! the frames of the passes over it differ by build and by function: the
//! binder's frame is some 1.6 KiB a level in a release build and 54 KiB in
//! a debug one. So the functions with large frames that recurse once per
//! level (binding at every level, evaluation every [`CHECK_EVERY`]) call
//! [`deep`], which moves the rest of the recursion onto a fresh
//! heap-allocated stack segment whenever the current one runs low
//! (stacker, as rustc does): the depth bound then caps memory, and no
//! thread's stack size has to guess at frame sizes.

/// Below this much stack left, the next level runs on a new segment: room
/// for two levels of the largest frame (the binder's, 54 KiB in a debug
/// build) or [`CHECK_EVERY`] levels of the evaluator's (6.5 KiB).
const RED_ZONE: usize = 512 * 1024;

/// Levels of an expression evaluated between two checks: a check costs as
/// much as a small node, so the evaluator, which runs per row, checks only
/// this often.
pub const CHECK_EVERY: u32 = 32;

/// Size of each new segment.
const SEGMENT: usize = 4 << 20;

/// Runs `f`, on a new stack segment if the current one is nearly used up.
#[inline]
pub fn deep<R>(f: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(RED_ZONE, SEGMENT, f)
}
