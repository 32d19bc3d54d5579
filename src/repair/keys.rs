//! Where a repair's (or verify's) keys come from: the sorted keys of an input ([`crate::keys`]) or a
//! fleet's queue ([`crate::queue::consume`]), and the one dispatch that runs either through the tool's
//! workers.

use crate::error::Result;
use crate::input::InputSpec;
use crate::keys::Item;
use crate::pool::{self, Feeder, Flow};
use crate::queue::consume::{self, Consumer, Delivery};
use std::future::Future;
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

/// A run's keys: the sorted keys of an input (`S`), or a fleet's queue (`Q`: its settings, then the
/// consumer once opened, [`Keys::open`]).
pub(crate) enum Keys<S, Q> {
    Sorted(S),
    Queue(Q),
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
