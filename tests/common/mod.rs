//! Helpers shared by the integration test binaries.
#![allow(dead_code)]

pub mod browser;
pub mod service;

use std::time::Duration;

use authprobe::protocol::{Expect, LoginSpec};
use authprobe::simulator::{Account, Settings, Simulator};

/// The app key every test simulator accepts.
pub const APP_KEY: &str = "test-app-key-Zq81";

/// Starts a simulator on a free loopback port.
pub async fn simulator(accounts: Vec<Account>) -> Simulator {
    simulator_with(Settings::new(&[APP_KEY], accounts)).await
}

/// Starts a simulator with explicit settings on a free loopback port.
pub async fn simulator_with(settings: Settings) -> Simulator {
    Simulator::start(settings, "127.0.0.1:0".parse().unwrap()).await.expect("bind simulator")
}

/// An account with a pin.
pub fn pin_account(username: &str, password: &str, pin: &str) -> Account {
    let mut a = Account::new(username, password);
    a.pin = Some(pin.into());
    a
}

/// A password-only account (password `pw`) that misbehaves with `fault`.
pub fn fault_account(username: &str, fault: authprobe::simulator::Fault) -> Account {
    let mut a = Account::new(username, "pw");
    a.fault = fault;
    a
}

/// An account with a verification code.
pub fn code_account(username: &str, password: &str, code: &str) -> Account {
    let mut a = Account::new(username, password);
    a.verification_code = Some(code.into());
    a
}

/// A login spec for `username` against `sim`.
pub fn spec(sim: &Simulator, username: &str, password: &str) -> LoginSpec {
    LoginSpec {
        base_url: sim.base_url().parse().unwrap(),
        app_key: APP_KEY.into(),
        username: username.to_owned(),
        password: password.into(),
        pin: None,
        verification_code: None,
        expect: Expect::Succeeded,
        timeout: Duration::from_secs(5),
        max_steps: 3,
        max_body_bytes: 64 * 1024,
        validate: false,
        logout: false,
        retries: 0,
    }
}

/// A loopback port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A plain HTTP client for talking to servers under test (the crate ships rustls without a
/// process-wide crypto provider, so install ring once).
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// GET `url` and return status and body text.
pub async fn get(url: &str) -> (u16, String) {
    let r = http().get(url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    (r.status().as_u16(), r.text().await.unwrap())
}
