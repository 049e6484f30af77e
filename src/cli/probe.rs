//! `authprobe probe`: run probes once and print their outcome.

use std::path::Path;

use authprobe::protocol::Prober;
use authprobe::report::ProbeReport;

use super::simulate::start_embedded_simulator;
use super::{load_config, Failure, Output, EXIT_FAILED};

/// Runs the probes `names` (or `all`) of `config_file` once, at the same time, and prints each
/// outcome as `output` says: 0 if all succeeded, else [`EXIT_FAILED`].
pub async fn command(names: &[String], all: bool, config_file: &Path, output: Output) -> Result<u8, Failure> {
    if names.is_empty() && !all {
        return Err(Failure::Config(anyhow::anyhow!(
            "name the probes to run (authprobe probe alice-password bob-pin), or run them all with --all; \
             `authprobe check-config` lists the probes of {}",
            config_file.display()
        )));
    }
    let (config, simulator) = load_config(config_file)?;
    let selected: Vec<_> = if all {
        config.probes.iter().collect()
    } else {
        let mut v = Vec::new();
        for n in names {
            let known: Vec<&str> = config.probes.iter().map(|p| &*p.name).collect();
            let p = config.probe(n).ok_or_else(|| {
                Failure::Config(anyhow::anyhow!(
                    "no probe named {n:?} in {} (known: {})",
                    config_file.display(),
                    known.join(", ")
                ))
            })?;
            v.push(p);
        }
        v
    };
    let _simulator = start_embedded_simulator(simulator.as_ref()).await?;
    let prober = Prober::new()?;
    prober.warm_up().await;
    let runs = futures_util::future::join_all(selected.iter().map(|p| async {
        if output == Output::Trace {
            let (outcome, trace) = prober.login_traced(&p.login).await;
            (outcome, Some(trace))
        } else {
            (prober.login(&p.login).await, None)
        }
    }))
    .await;
    let mut all_ok = true;
    for (p, (outcome, trace)) in selected.iter().zip(&runs) {
        all_ok &= outcome.is_success();
        authprobe::report::log_run(&p.name, &p.target, None, outcome);
        let report = ProbeReport { probe: &p.name, target: &p.target, outcome };
        match output {
            Output::Json => println!("{}", report.to_json()),
            Output::Text => print!("{}", report.to_text()),
            Output::Trace => print!("{}", report.to_trace(trace.as_ref())),
        }
    }
    Ok(if all_ok { 0 } else { EXIT_FAILED })
}
