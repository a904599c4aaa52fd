//! Named fault points, compiled in and off unless configured. Tests (and,
//! later, chaos experiments) switch them on to stop the process, or fail an
//! operation, at an exact step of a protocol such as two-phase commit.
//!
//! A spec is `name=action[@n],...` where action is `crash` (abort the process
//! at once: nothing is flushed, as with SIGKILL) or `error`, and `@n` fires on
//! the n-th hit (default 1). `fortress serve` reads it from `FORTRESS_FAULTS`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Crash,
    Error,
}

#[derive(Debug)]
struct Fault {
    action: Action,
    fire_at: u64,
    hits: u64,
}

static ENABLED: AtomicBool = AtomicBool::new(false);
static FAULTS: Mutex<Option<HashMap<String, Fault>>> = Mutex::new(None);

/// An `error` fault fired.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("injected fault at {0}")]
pub struct InjectedFault(pub String);

/// Installs the faults of `spec` (replacing any before); an empty spec
/// switches every fault point off.
pub fn configure(spec: &str) -> Result<(), String> {
    let mut map = HashMap::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, rest) = part
            .split_once('=')
            .ok_or_else(|| format!("fault {part:?}: expected name=action[@n]"))?;
        let (action, n) = match rest.split_once('@') {
            Some((a, n)) => (
                a,
                n.parse::<u64>()
                    .map_err(|_| format!("fault {part:?}: bad count"))?,
            ),
            None => (rest, 1),
        };
        let action = match action {
            "crash" => Action::Crash,
            "error" => Action::Error,
            other => return Err(format!("fault {part:?}: unknown action {other:?}")),
        };
        map.insert(
            name.to_string(),
            Fault {
                action,
                fire_at: n.max(1),
                hits: 0,
            },
        );
    }
    ENABLED.store(!map.is_empty(), Ordering::Release);
    *FAULTS.lock().expect("faults") = Some(map);
    Ok(())
}

/// Passes fault point `name`: a no-op unless a fault is configured there.
pub fn hit(name: &str) -> Result<(), InjectedFault> {
    if !ENABLED.load(Ordering::Acquire) {
        return Ok(());
    }
    let mut guard = FAULTS.lock().expect("faults");
    let Some(f) = guard.as_mut().and_then(|m| m.get_mut(name)) else {
        return Ok(());
    };
    f.hits += 1;
    if f.hits != f.fire_at {
        return Ok(());
    }
    match f.action {
        Action::Crash => {
            tracing::error!(fault = name, "injected crash");
            std::process::abort();
        }
        Action::Error => Err(InjectedFault(name.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_faults_fire_on_the_nth_hit_only() {
        configure("t.point=error@2").unwrap();
        assert!(hit("t.point").is_ok());
        assert_eq!(hit("t.point"), Err(InjectedFault("t.point".into())));
        assert!(hit("t.point").is_ok());
        assert!(hit("t.other").is_ok());
        configure("").unwrap();
        assert!(configure("x=explode").is_err());
    }
}
