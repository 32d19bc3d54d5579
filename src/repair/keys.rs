//! Where a repair's (or verify's) keys come from: the sorted keys of an input ([`crate::keys`]) or a
//! fleet's queue ([`crate::queue::consume`]), and the one dispatch that runs either through the tool's
//! workers.

use crate::error::Result;
use crate::input::{InputSpec, Rejects};
use crate::keys::{Item, SortedKeys};
use crate::pool::{self, Feeder, Flow};
use crate::queue::consume::{self, Consumer, Delivery};
use serde::Serialize;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

/// Where a run's keys come from.
#[derive(Clone, Debug)]
pub enum KeySource {
    /// A key input (a file, or `-` for stdin): sorted first, each key once, see [`crate::keys::sort`].
    Input(InputSpec),
    /// A fleet's queue on Redis Streams: keys in the order the queue hands them out, see
    /// [`crate::queue::consume`].
    Queue(crate::queue::consume::ConsumerConfig),
}

/// What a run's summary.json says of its keys, the same in repair's and verify's.
#[derive(Clone, Debug, Default, Serialize)]
pub struct KeysIn {
    /// The key input (`<stdin>` for `-`), or the queue's URL.
    pub keys_file: String,
    /// Keys read from the input (after dropping duplicates); from a queue, keys with an outcome.
    pub keys_input: u64,
    pub duplicate_keys_in_input: u64,
    /// Input rows that could not be used (in rejects.csv): exit status 2.
    pub keys_rejected: u64,
}

impl KeysIn {
    /// The tool's exit status: 2 when input rows were rejected, else what its outcomes say.
    pub fn exit_code(&self, outcomes: i32) -> i32 {
        if self.keys_rejected > 0 {
            2
        } else {
            outcomes
        }
    }

    /// `, N input rows rejected (rejects.csv)` for the summary paragraph, or nothing.
    pub fn rejected_note(&self) -> String {
        if self.keys_rejected > 0 {
            format!(", {} input rows rejected (rejects.csv)", self.keys_rejected)
        } else {
            String::new()
        }
    }
}

/// Reads a run's keys: an input is sorted into `scratch` (each key once; rows it cannot use go to
/// `out/rejects.csv`); a queue is only named here and joined later ([`Keys::open`]).
pub(crate) fn read(
    source: &KeySource,
    out: &Path,
    mem: usize,
    tmp: &Path,
    scratch: &Path,
) -> Result<(Keys<SortedKeys, crate::queue::consume::ConsumerConfig>, KeysIn)> {
    Ok(match source {
        KeySource::Input(spec) => {
            let rejects = Rejects::new(Some(out.join("rejects.csv")));
            let keys = crate::keys::sort(spec, &rejects, mem, tmp, scratch)?;
            rejects.flush()?;
            let read = KeysIn {
                keys_file: keys.source.clone(),
                keys_input: keys.count,
                duplicate_keys_in_input: keys.duplicates,
                keys_rejected: keys.input.rejected,
            };
            (Keys::Sorted(keys), read)
        }
        KeySource::Queue(q) => (Keys::Queue(q.clone()), KeysIn { keys_file: q.url.shown.clone(), ..KeysIn::default() }),
    })
}

/// A run's keys: the sorted keys of an input (`S`), or a fleet's queue (`Q`: its settings, then the
/// consumer once opened, [`Keys::open`]).
pub(crate) enum Keys<S, Q> {
    Sorted(S),
    Queue(Q),
}

impl<S, Q> Keys<S, Q> {
    /// The same keys with the sorted input turned into `T` (the queue as it is).
    pub(crate) fn map_sorted<T>(self, f: impl FnOnce(S) -> Result<T>) -> Result<Keys<T, Q>> {
        Ok(match self {
            Keys::Sorted(s) => Keys::Sorted(f(s)?),
            Keys::Queue(q) => Keys::Queue(q),
        })
    }
}

impl<S> Keys<S, crate::queue::consume::ConsumerConfig> {
    /// Joins the queue's consumer group (an input's keys are ready as they are).
    pub(crate) async fn open(self) -> Result<Keys<S, Arc<Consumer>>> {
        Ok(match self {
            Keys::Sorted(s) => Keys::Sorted(s),
            Keys::Queue(q) => Keys::Queue(Consumer::open(q).await?),
        })
    }
}

impl<S, Q: Clone> Keys<S, Q> {
    pub(crate) fn sorted(&self) -> Option<&S> {
        match self {
            Keys::Sorted(s) => Some(s),
            Keys::Queue(_) => None,
        }
    }

    pub(crate) fn queue(&self) -> Option<Q> {
        match self {
            Keys::Sorted(_) => None,
            Keys::Queue(q) => Some(q.clone()),
        }
    }
}

/// Workers for `total` keys (`None`: from a queue, unknown): `concurrency`, but no more than keys.
pub(crate) fn workers(concurrency: usize, total: Option<u64>) -> usize {
    match total {
        Some(n) => concurrency.min(n as usize).max(1),
        None => concurrency,
    }
}

/// Runs a run's keys through `workers` workers sharing `sh`: a sorted input's items (`produce` turns
/// the input into a feed) through `item`, or the queue's deliveries through `delivery` (which
/// acknowledges them).
pub(crate) async fn work<S, T, P, I, IF, D, DF>(
    workers: usize,
    sh: &Arc<S>,
    keys: Keys<T, Arc<Consumer>>,
    produce: impl FnOnce(T) -> P,
    item: I,
    delivery: D,
) -> Result<()>
where
    S: Send + Sync + 'static,
    P: FnOnce(Feeder<Item>) -> Result<()> + Send + 'static,
    I: Fn(Arc<S>, Item) -> IF + Clone + Send + 'static,
    IF: Future<Output = Flow> + Send,
    D: Fn(Arc<S>, Delivery) -> DF + Clone + Send + 'static,
    DF: Future<Output = Flow> + Send,
{
    let sh = sh.clone();
    match keys {
        Keys::Sorted(t) => pool::run(workers, produce(t), move |it| item(sh.clone(), it)).await,
        Keys::Queue(q) => consume::run(q, workers, move |d| delivery(sh.clone(), d)).await,
    }
}
