//! The sharding options of CREATE TABLE ... WITH (...): `strategy`,
//! `split_points`, `interval`, `list`, `default_shard(s)` and `hash_key`,
//! turned into a [`Strategy`] checked against the table's columns.

use fortress_storage::schema::{ColumnDef, Strategy, TimeInterval};
use fortress_storage::{DataType, ShardId, Value};

use crate::error::{ProxyError, Result};

/// The raw text of the sharding options a CREATE TABLE gave.
#[derive(Default)]
pub struct StrategyOptions {
    pub strategy: Option<String>,
    pub split_points: Option<String>,
    pub interval: Option<String>,
    pub list: Option<String>,
    pub default_shard: Option<String>,
    pub hash_key: Option<String>,
}

impl StrategyOptions {
    /// Takes `key = text` if it is a sharding option; false otherwise.
    pub fn take(&mut self, key: &str, text: String) -> bool {
        let slot = match key {
            "strategy" => &mut self.strategy,
            "split_points" => &mut self.split_points,
            "interval" => &mut self.interval,
            "list" => &mut self.list,
            "default_shard" | "default_shards" => &mut self.default_shard,
            "hash_key" => &mut self.hash_key,
            _ => return false,
        };
        *slot = Some(text);
        true
    }

    /// The strategy for a table whose shard key is column `shard_key`.
    pub fn build(&self, columns: &[ColumnDef], pk: &[usize], shard_key: usize) -> Result<Strategy> {
        let name = self.strategy.as_deref().unwrap_or("hash").to_lowercase();
        let key = &columns[shard_key];
        let strategy = match name.as_str() {
            "hash" => Strategy::Hash,
            "range" => {
                let text = self
                    .split_points
                    .as_deref()
                    .ok_or_else(|| invalid("strategy \"range\" needs split_points".into()))?;
                let splits = text
                    .split(',')
                    .map(|p| parse_value(key, p))
                    .collect::<Result<Vec<_>>>()?;
                let ascending = splits
                    .windows(2)
                    .all(|w| matches!(w[0].sql_cmp(&w[1]), Ok(Some(o)) if o.is_lt()));
                if !ascending {
                    return Err(invalid("split_points must be strictly ascending".into()));
                }
                Strategy::Range { splits }
            }
            "time" => {
                if !matches!(
                    key.ty,
                    DataType::Date | DataType::Timestamp | DataType::Timestamptz
                ) {
                    return Err(invalid(format!(
                        "strategy \"time\" needs a date or timestamp shard key, and \"{}\" is {}",
                        key.name,
                        key.ty.pg_name()
                    )));
                }
                let interval = match self.interval.as_deref().map(str::to_lowercase).as_deref() {
                    Some("day") => TimeInterval::Day,
                    None | Some("month") => TimeInterval::Month,
                    Some("year") => TimeInterval::Year,
                    Some(other) => {
                        return Err(invalid(format!(
                            "interval \"{other}\" is not day, month or year"
                        )))
                    }
                };
                Strategy::Time { interval }
            }
            "list" => {
                let groups = parse_list(key, self.list.as_deref())?;
                let mut values = Vec::new();
                for (v, shards) in groups {
                    let [s] = shards[..] else {
                        return Err(invalid(format!(
                            "list value {} must name one shard (a group of shards is strategy \"hybrid\")",
                            v.to_text().unwrap_or_default()
                        )));
                    };
                    values.push((v, s));
                }
                let default = match self.default_shard.as_deref() {
                    None => None,
                    Some(d) => Some(parse_shard(d)?),
                };
                Strategy::List { values, default }
            }
            "hybrid" => {
                let col = self
                    .hash_key
                    .as_deref()
                    .ok_or_else(|| invalid("strategy \"hybrid\" needs hash_key".into()))?
                    .to_lowercase();
                let hash_key = columns.iter().position(|c| c.name == col).ok_or_else(|| {
                    ProxyError::new("42703", format!("hash key column \"{col}\" does not exist"))
                })?;
                if !pk.contains(&hash_key) || hash_key == shard_key {
                    return Err(ProxyError::new(
                        "0A000",
                        format!(
                            "hash key \"{col}\" must be a primary-key column other than the shard key"
                        ),
                    ));
                }
                let groups = parse_list(key, self.list.as_deref())?;
                let default = match self.default_shard.as_deref() {
                    None => None,
                    Some(d) => Some(parse_shards(d)?),
                };
                Strategy::Hybrid {
                    hash_key,
                    groups,
                    default,
                }
            }
            other => {
                return Err(invalid(format!(
                    "strategy \"{other}\" is not hash, range, time, list or hybrid"
                )))
            }
        };
        let allowed: &[&str] = match &strategy {
            Strategy::Hash => &[],
            Strategy::Range { .. } => &["split_points"],
            Strategy::Time { .. } => &["interval"],
            Strategy::List { .. } => &["list", "default_shard"],
            Strategy::Hybrid { .. } => &["list", "default_shard", "hash_key"],
        };
        for (option, given) in [
            ("split_points", &self.split_points),
            ("interval", &self.interval),
            ("list", &self.list),
            ("default_shard", &self.default_shard),
            ("hash_key", &self.hash_key),
        ] {
            if given.is_some() && !allowed.contains(&option) {
                return Err(invalid(format!(
                    "option \"{option}\" does not apply to strategy \"{name}\""
                )));
            }
        }
        Ok(strategy)
    }
}

/// The highest shard a strategy names (checked against the cluster when the
/// table is created).
pub fn highest_shard(s: &Strategy) -> Option<ShardId> {
    match s {
        Strategy::Hash | Strategy::Time { .. } => None,
        Strategy::Range { splits } => Some(splits.len() as ShardId),
        Strategy::List { values, default } => values.iter().map(|(_, s)| *s).chain(*default).max(),
        Strategy::Hybrid {
            groups, default, ..
        } => groups
            .iter()
            .flat_map(|(_, g)| g.iter().copied())
            .chain(default.iter().flatten().copied())
            .max(),
    }
}

/// `value:shard[,shard...]; value:...` in the shard key's type.
fn parse_list(key: &ColumnDef, text: Option<&str>) -> Result<Vec<(Value, Vec<ShardId>)>> {
    let text =
        text.ok_or_else(|| invalid("this strategy needs list = 'value:shard; ...'".into()))?;
    let mut out: Vec<(Value, Vec<ShardId>)> = Vec::new();
    for entry in text.split(';').filter(|e| !e.trim().is_empty()) {
        let (v, shards) = entry.rsplit_once(':').ok_or_else(|| {
            invalid(format!(
                "list entry \"{}\" is not value:shard",
                entry.trim()
            ))
        })?;
        let v = parse_value(key, v)?;
        if out
            .iter()
            .any(|(x, _)| matches!(x.sql_cmp(&v), Ok(Some(o)) if o.is_eq()))
        {
            return Err(invalid(format!(
                "list value {} appears twice",
                v.to_text().unwrap_or_default()
            )));
        }
        out.push((v, parse_shards(shards)?));
    }
    if out.is_empty() {
        return Err(invalid("list names no values".into()));
    }
    Ok(out)
}

fn parse_shards(text: &str) -> Result<Vec<ShardId>> {
    let mut shards = text
        .split(',')
        .map(parse_shard)
        .collect::<Result<Vec<_>>>()?;
    shards.sort_unstable();
    shards.dedup();
    Ok(shards)
}

fn parse_shard(text: &str) -> Result<ShardId> {
    text.trim()
        .parse()
        .map_err(|_| invalid(format!("\"{}\" is not a shard number", text.trim())))
}

fn parse_value(key: &ColumnDef, text: &str) -> Result<Value> {
    let t = text.trim();
    let t = t
        .strip_prefix('\'')
        .and_then(|x| x.strip_suffix('\''))
        .unwrap_or(t);
    Value::parse(&key.ty, t).map_err(|_| {
        invalid(format!(
            "\"{t}\" is not a valid {} for shard key \"{}\"",
            key.ty.pg_name(),
            key.name
        ))
    })
}

fn invalid(message: String) -> ProxyError {
    ProxyError::new("22023", message)
}
