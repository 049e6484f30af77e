//! `authprobe check-config`: validate the probes file without probing, and list what would run.

use std::path::Path;

use super::{load_config, Failure};

/// Loads `config_file` and prints its targets, simulator and probes.
pub fn command(config_file: &Path) -> Result<u8, Failure> {
    let (config, simulator) = load_config(config_file)?;
    println!("{}: OK, {} target(s), {} probe(s)", config_file.display(), config.targets.len(), config.probes.len());
    if let Some(sim) = &simulator {
        let https = sim.tls.as_ref().map(|t| format!(" (and HTTPS on {})", t.listen)).unwrap_or_default();
        println!("simulator: listen {}{https} with {} account(s)", sim.listen, sim.settings.accounts.len());
        if let Some(ldap) = &sim.settings.ldap {
            let ldaps = ldap.ldaps_listen.map(|a| format!(" (and ldaps:// on {a})")).unwrap_or_default();
            let start_tls = if ldap.tls.is_some() { ", StartTLS" } else { "" };
            println!("simulator LDAP directory: {} on {}{start_tls}{ldaps}", ldap.base_dn(), ldap.listen);
        }
    }
    for p in &config.probes {
        let labels: Vec<String> = p.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "probe {} target={} {} {}{}",
            p.name,
            p.target,
            p.schedule,
            p.login.summary(),
            if labels.is_empty() { String::new() } else { format!(" labels={{{}}}", labels.join(",")) }
        );
    }
    for (probes, warning) in config.warnings() {
        eprintln!("warning: {warning} (probes {probes})");
    }
    Ok(0)
}
