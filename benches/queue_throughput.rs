//! Keys per second through the fleet queue with one consumer that copies nothing: the queue's own cost
//! (XREADGROUP batches, the pool, batched MULTI of outcome + XACK + XDEL), so Redis can be shown not to
//! be the bottleneck of a fleet. Run through scripts/bench-queue.sh; by hand, after an enqueue:
//!
//!     cargo bench --bench queue_throughput -- redis://127.0.0.1:6379/NAME WORKERS
use keyrecon::pool::Flow;
use keyrecon::queue::consume::{self, Consumer, ConsumerConfig};
use keyrecon::queue::QueueUrl;
use keyrecon::repair::journal::{self, Done, Outcome};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().filter(|a| a != "--bench").collect();
    let (Some(url), Some(workers)) = (args.get(1), args.get(2).and_then(|w| w.parse::<usize>().ok())) else {
        eprintln!("usage: queue_throughput URL WORKERS");
        std::process::exit(2);
    };
    let rt = keyrecon::rt::runtime().unwrap();
    let cfg = ConsumerConfig {
        url: QueueUrl::parse(url).unwrap(),
        consumer: format!("bench-{}", std::process::id()),
        tool: "keyrecon-repair",
        prefix: Vec::new(),
        claim_idle: Duration::from_secs(60),
        max_deliveries: 5,
        batch: workers.max(1000),
        redis_timeout: Duration::from_secs(30),
        quiet: true,
    };
    let t0 = Instant::now();
    let stats = rt
        .block_on(async {
            let c = Consumer::open(cfg).await?;
            let w = c.clone();
            consume::run(c.clone(), workers, move |d| {
                let c = w.clone();
                async move {
                    let done = Done::new(Outcome::Ok, &d.item.key, d.item.origin.as_deref());
                    c.complete(&d, "ok", journal::encode(&done), true, None);
                    Flow::Continue
                }
            })
            .await?;
            Ok::<_, keyrecon::Error>(c.stats())
        })
        .unwrap();
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "consumed {} keys in {secs:.2}s: {:.0} keys/s ({} acknowledged)",
        stats.delivered + stats.claimed,
        (stats.delivered + stats.claimed) as f64 / secs,
        stats.acknowledged
    );
}
