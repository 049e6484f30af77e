//! How tokio-cron-scheduler 0.15.1 carries N repeated jobs at one interval: CPU of the process
//! and start delay of each activation against its planned whole second.
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_cron_scheduler::{Job, JobScheduler};

fn cpu_ticks() -> u64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap();
    let f: Vec<&str> = s.rsplit(')').next().unwrap().split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::args().nth(1).map_or(10_000, |a| a.parse().unwrap());
    let secs: u64 = std::env::args().nth(2).map_or(60, |a| a.parse().unwrap());
    let measure: u64 = std::env::args().nth(3).map_or(120, |a| a.parse().unwrap());
    let sched = JobScheduler::new_with_channel_size(n * 4).await.unwrap();
    let delays = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..n {
        let d = delays.clone();
        let job = Job::new_repeated_async(Duration::from_secs(secs), move |_, _| {
            let d = d.clone();
            Box::pin(async move {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
                // Repeated jobs fire on whole seconds: the delay is the fraction past the second.
                d.lock().unwrap().push(now.subsec_micros());
            })
        })
        .unwrap();
        sched.add(job).await.unwrap();
    }
    sched.start().await.unwrap();
    tokio::time::sleep(Duration::from_secs(secs + 5)).await;
    delays.lock().unwrap().clear();
    let (c0, t0) = (cpu_ticks(), std::time::Instant::now());
    tokio::time::sleep(Duration::from_secs(measure)).await;
    let (c1, wall) = (cpu_ticks(), t0.elapsed().as_secs_f64());
    let mut d = delays.lock().unwrap().clone();
    d.sort_unstable();
    let q = |p: f64| d.get(((d.len() as f64 * p) as usize).min(d.len().saturating_sub(1))).copied().unwrap_or(0) as f64 / 1000.0;
    let hz = 100.0;
    println!(
        "{n} jobs every {secs}s: CPU {:.2} % of one core; {} activations ({:.1}/s planned {:.1}/s); delay p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
        100.0 * (c1 - c0) as f64 / hz / wall, d.len(), d.len() as f64 / wall, n as f64 / secs as f64, q(0.5), q(0.99), q(1.0)
    );
}
