//! `breaker_*`: an endpoint down with its breaker open, then its parked work drained.

use std::time::{Duration, Instant};

use entraguard_core::job::{DeliveryJob, Job};

use crate::sink::{Mode, Sink};

use super::*;

/// An endpoint down for `down_secs` with events arriving at 10/s: the attempts that reach it
/// once its breaker is open (only the probes should). Then `parked` deliveries wait in its lane
/// and it recovers: seconds until all are delivered, and how many came twice.
pub(super) async fn breaker(env: &Env, down_secs: u64, parked: usize) -> anyhow::Result<()> {
    let sink = Sink::start(Mode::Down).await?;
    let ep = env.endpoint(&sink.url).await?;
    let worker = env.worker(
        50,
        &["--endpoint-concurrency", "16", "--breaker-probe", "2s", "--retry-schedule", "10s,1m,5m"],
    )?;
    env.wait_worker_ready().await?;
    let home = env.shards.for_endpoint(&ep.id).keys();
    let breaker_key = home.breaker(ep.id.as_str());
    let mut conn = env.queue.connection();
    let is_open =
        |state: Option<String>| state.as_deref() == Some("open") || state.as_deref() == Some("half_open");
    // Trip it.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        env.producer.publish(&event("trip")).await?;
        let state: Option<String> = redis::AsyncCommands::hget(&mut conn, &breaker_key, "state").await?;
        if is_open(state) {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the breaker never opened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused_at_open = sink.refused();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for _ in 0..(down_secs * 10) {
        tick.tick().await;
        env.producer.publish(&event("while-open")).await?;
    }
    report("breaker_attempts_while_open", (sink.refused() - refused_at_open) as f64, "attempts");
    report("breaker_open_secs", down_secs as f64, "s");
    // Fill the lane to `parked`, then recover.
    let lane = home.lane(ep.id.as_str());
    let have: usize = redis::AsyncCommands::llen(&mut conn, &lane).await?;
    let more: Vec<String> = (have..parked)
        .map(|i| Job::Delivery(DeliveryJob::new(event(&format!("parked-{i}")), ep.id.clone())).encode())
        .collect();
    for chunk in more.chunks(1_000) {
        let _: () = redis::AsyncCommands::rpush(&mut conn, &lane, chunk).await?;
    }
    let waiting: usize = redis::AsyncCommands::llen(&mut conn, &lane).await?;
    let recovered = Instant::now();
    sink.recover();
    sink.wait_for(waiting, Duration::from_secs(600)).await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    while env.shards.stats().await?.parked > 0 {
        anyhow::ensure!(Instant::now() < deadline, "the lane never drained");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    report("breaker_drain_s", recovered.elapsed().as_secs_f64(), "s");
    report("breaker_drained", waiting as f64, "deliveries");
    report("breaker_drain_duplicates", sink.duplicates() as f64, "deliveries");
    stop(worker).await?;
    env.cleanup().await
}
