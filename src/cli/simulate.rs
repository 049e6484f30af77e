//! `authprobe simulate`, and the embedded simulator that `run` and `probe` start from the probes
//! file's `simulator:` block.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context as _;
use authprobe::simulator::{Settings, Simulator, SimulatorSpec, SimulatorTls, StartError};

use super::{load_config, Failure};

/// Serves the accounts file, or the `simulator:` block of `config_file`, until Ctrl-C.
pub async fn command(listen: Option<SocketAddr>, accounts: Option<&Path>, config_file: &Path) -> Result<u8, Failure> {
    let (settings, default_listen, tls) = match accounts {
        Some(path) => {
            let settings =
                Settings::load(path).map_err(|e| Failure::Config(anyhow::anyhow!("invalid accounts file:\n{e}")))?;
            (settings, authprobe::simulator::DEFAULT_LISTEN.parse().expect("valid default"), None)
        }
        None => {
            let (_, simulator) = load_config(config_file)?;
            let sim = simulator.ok_or_else(|| {
                Failure::Config(anyhow::anyhow!(
                    "{} has no simulator: block; pass --accounts FILE",
                    config_file.display()
                ))
            })?;
            (sim.settings, sim.listen, sim.tls)
        }
    };
    let addr = listen.unwrap_or(default_listen);
    let sim = Simulator::start(settings, addr).await.context("cannot start the simulator")?;
    let mut sims = vec![sim];
    if let Some(tls) = tls {
        sims.push(also_https(&sims[0], &tls).await?);
    }
    for sim in &sims {
        tracing::info!(address = %sim.addr(), base_url = %sim.base_url(), "simulator listening");
        println!("simulator listening on {} (base_url {})", sim.addr(), sim.base_url());
    }
    let directory = [("ldap", sims[0].ldap_addr()), ("ldaps", sims[0].ldaps_addr())];
    for (scheme, addr) in directory.into_iter().filter_map(|(s, a)| Some((s, a?))) {
        tracing::info!(address = %addr, "simulator LDAP directory listening");
        println!("simulator LDAP directory listening on {scheme}://{addr}");
    }
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    for sim in sims {
        sim.shutdown().await;
    }
    Ok(0)
}

/// Starts the file's `simulator:` block, if any, on its address and, with `tls:`, on its HTTPS
/// address too (one world on both). If its address is taken, another simulator (e.g.
/// `authprobe simulate` or a running `authprobe run`) is assumed to serve it.
pub async fn start_embedded_simulator(spec: Option<&SimulatorSpec>) -> Result<Vec<Simulator>, Failure> {
    let Some(spec) = spec else { return Ok(Vec::new()) };
    let sim = match Simulator::start(spec.settings.clone(), spec.listen).await {
        Ok(sim) => sim,
        Err(StartError::Listen { source, .. }) if source.kind() == std::io::ErrorKind::AddrInUse => {
            tracing::warn!(address = %spec.listen, "simulator address in use; probing whatever serves it");
            return Ok(Vec::new());
        }
        Err(StartError::Listen { addr, source }) => {
            return Err(Failure::Config(anyhow::anyhow!("simulator.listen {addr}: {source}")));
        }
        Err(StartError::Ldap { addr, source }) => {
            return Err(Failure::Config(anyhow::anyhow!("simulator.ldap: {addr}: {source}")));
        }
    };
    tracing::debug!(address = %sim.addr(), "embedded simulator started");
    let mut started = vec![sim];
    if let Some(tls) = &spec.tls {
        started.push(also_https(&started[0], tls).await.map_err(Failure::Config)?);
    }
    Ok(started)
}

/// `sim`'s world served over HTTPS as `tls` says.
async fn also_https(sim: &Simulator, tls: &SimulatorTls) -> anyhow::Result<Simulator> {
    let listener = tokio::net::TcpListener::bind(tls.listen)
        .await
        .with_context(|| format!("simulator.tls.listen {}", tls.listen))?;
    Ok(sim.serve_tls_too(listener, tls.config.clone()))
}
