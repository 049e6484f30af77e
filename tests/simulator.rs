//! The simulator answers exactly as the reference pages say, seen through raw HTTP requests.

mod common;

use std::collections::HashMap;

use authprobe::simulator::{Account, Fault};
use common::*;
use serde_json::{json, Value};

struct Answer {
    status: u16,
    body: Value,
}

async fn post(base: &str, headers: &[(&str, &str)]) -> Answer {
    let client = http();
    let mut req = client.post(format!("{base}/token")).header("Content-Length", "0");
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let body = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap_or(Value::Null);
    Answer { status, body }
}

fn token_of(a: &Answer) -> String {
    a.body["Token"].as_str().expect("a Token").to_owned()
}

#[tokio::test]
async fn documented_answers_of_the_first_step() {
    let sim = simulator(vec![Account::new("alice", "pw"), pin_account("bob", "pw", "4321")]).await;
    let base = sim.base_url();

    let a = post(&base, &[("Username", "alice"), ("Password", "pw")]).await;
    assert_eq!((a.status, a.body), (403, json!({"error": "Application key is not defined or does not exist"})));
    let a = post(&base, &[("Et-App-Key", "wrong"), ("Username", "alice"), ("Password", "pw")]).await;
    assert_eq!(a.status, 403);

    let a = post(&base, &[("Et-App-Key", APP_KEY), ("Username", "alice"), ("Password", "nope")]).await;
    let invalid = json!({"State": "Failed", "Step": "BaseAuthentication", "Reason": "Invalid credentials"});
    assert_eq!((a.status, &a.body), (401, &invalid));
    let a = post(&base, &[("Et-App-Key", APP_KEY)]).await;
    assert_eq!((a.status, &a.body), (401, &invalid), "missing credentials");

    let a = post(&base, &[("et-app-key", APP_KEY), ("username", "alice"), ("password", "pw")]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["State"], "Succeeded");
    assert!(token_of(&a).len() > 40);

    // The PIN prompt, exactly as in the reference's 202 example.
    let a = post(&base, &[("Et-App-Key", APP_KEY), ("Username", "bob"), ("Password", "pw")]).await;
    assert_eq!(a.status, 202);
    let keys: Vec<&str> = a.body.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 4);
    assert_eq!(
        (&a.body["Step"], &a.body["Reason"], &a.body["State"]),
        (&json!("SecutityPin"), &json!("Invalid pin"), &json!("Expecting"))
    );
}

#[tokio::test]
async fn pin_flow_tickets_are_single_use_and_bound_to_the_user() {
    let sim = simulator(vec![pin_account("bob", "pw", "4321"), pin_account("mallory", "pw", "1")]).await;
    let base = sim.base_url();
    let creds = [("Et-App-Key", APP_KEY), ("Username", "bob"), ("Password", "pw")];

    let prompt = post(&base, &creds).await;
    let bearer = format!("Bearer {}", token_of(&prompt));

    // The second step without the interim token: Corrupted ticket.
    let a = post(&base, &[creds[0], creds[1], creds[2], ("PinCode", "4321")]).await;
    assert_eq!(
        (a.status, a.body),
        (401, json!({"State": "Failed", "Step": "SecutityPin", "Reason": "Corrupted ticket"}))
    );

    // Another user's ticket is no good either.
    let other = post(&base, &[("Et-App-Key", APP_KEY), ("Username", "mallory"), ("Password", "pw")]).await;
    let a = post(
        &base,
        &[
            creds[0],
            creds[1],
            creds[2],
            ("PinCode", "4321"),
            ("Authorization", &format!("Bearer {}", token_of(&other))),
        ],
    )
    .await;
    assert_eq!(a.body["Reason"], "Corrupted ticket");

    // Wrong pin: 401 Invalid pin (and the ticket is spent).
    let a = post(&base, &[creds[0], creds[1], creds[2], ("PinCode", "0000"), ("Authorization", &bearer)]).await;
    assert_eq!((a.status, a.body), (401, json!({"State": "Failed", "Step": "SecutityPin", "Reason": "Invalid pin"})));
    let a = post(&base, &[creds[0], creds[1], creds[2], ("PinCode", "4321"), ("Authorization", &bearer)]).await;
    assert_eq!(a.body["Reason"], "Corrupted ticket", "a spent ticket cannot be reused");

    // The right pin with a fresh ticket, and the password is checked again on the second step.
    let bearer = format!("Bearer {}", token_of(&post(&base, &creds).await));
    let a =
        post(&base, &[creds[0], creds[1], ("Password", "bad"), ("PinCode", "4321"), ("Authorization", &bearer)]).await;
    assert_eq!(a.body["Reason"], "Invalid credentials");
    let bearer = format!("Bearer {}", token_of(&post(&base, &creds).await));
    let a = post(&base, &[creds[0], creds[1], creds[2], ("PinCode", "4321"), ("Authorization", &bearer)]).await;
    assert_eq!((a.status, &a.body["State"]), (200, &json!("Succeeded")));
    assert_eq!(sim.issued_tokens("bob"), vec![token_of(&a)]);
}

#[tokio::test]
async fn verification_code_prompt_and_states() {
    let mut uninit = Account::new("erin", "pw");
    uninit.pin_initialized = false;
    let mut expired = Account::new("dave", "pw");
    expired.password_expired = true;
    let sim = simulator(vec![code_account("carol", "pw", "735190"), uninit, expired]).await;
    let base = sim.base_url();
    let creds = |u: &'static str| [("Et-App-Key", APP_KEY), ("Username", u), ("Password", "pw")];

    let a = post(&base, &creds("carol")).await;
    assert_eq!(a.status, 202);
    assert_eq!(
        (&a.body["Step"], &a.body["Reason"]),
        (&json!("VerificationCode"), &json!("Expecting confirmation code"))
    );
    let bearer = format!("Bearer {}", token_of(&a));
    let c = creds("carol");
    let a = post(&base, &[c[0], c[1], c[2], ("VerificationCode", "735190"), ("Authorization", &bearer)]).await;
    assert_eq!(a.status, 200);

    let a = post(&base, &creds("erin")).await;
    assert_eq!(
        (a.status, &a.body["Reason"], &a.body["State"]),
        (202, &json!("PIN code is not init"), &json!("Expecting"))
    );

    let a = post(&base, &creds("dave")).await;
    assert_eq!(
        (a.status, a.body),
        (
            401,
            json!({"State": "Failed", "Step": "BaseAuthentication", "Reason": "Your Password has expired and must be changed"})
        )
    );
}

#[tokio::test]
async fn final_tokens_are_unique_and_requests_are_counted() {
    let mut a = Account::new("alice", "pw");
    a.extra_fields = true;
    let sim = simulator(vec![a]).await;
    let base = sim.base_url();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..50 {
        let a = post(&base, &[("Et-App-Key", APP_KEY), ("Username", "alice"), ("Password", "pw")]).await;
        assert_eq!(a.body["ConfirmationToken"], Value::Null);
        assert!(a.body.as_object().unwrap().contains_key("PersonalPhrase"));
        assert!(seen.insert(token_of(&a)));
    }
    let stats = sim.stats("alice");
    assert_eq!((stats.requests, stats.logins, stats.tokens_issued), (50, 50, 50));

    // The same counters over HTTP, for tests of the real binary.
    let (_, raw) = get(&format!("http://{}/_sim/stats", sim.addr())).await;
    let over_http: HashMap<String, Value> = serde_json::from_str(&raw).unwrap();
    assert_eq!(over_http["alice"]["tokens_issued"], 50);
}

#[tokio::test]
async fn routes_outside_the_api() {
    let sim = simulator(vec![Account::new("alice", "pw")]).await;
    let r = http().get(format!("{}/token", sim.base_url())).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    let r = http().post(format!("http://{}/wrong/token", sim.addr())).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert!(body["Message"].as_str().unwrap().starts_with("No HTTP resource was found that matches the request URI"));
}

#[tokio::test]
async fn faults_can_be_switched_while_serving() {
    let sim = simulator(vec![Account::new("alice", "pw")]).await;
    let base = sim.base_url();
    let creds = [("Et-App-Key", APP_KEY), ("Username", "alice"), ("Password", "pw")];
    assert!(sim.update_account("alice", |a| a.fault = Fault::ServerError));
    let a = post(&base, &creds).await;
    assert_eq!((a.status, &a.body["error"]), (500, &json!("Unexpected server error")));
    assert!(sim.update_account("alice", |a| a.fault = Fault::None));
    assert_eq!(post(&base, &creds).await.status, 200);
    assert!(!sim.update_account("nobody", |_| {}));
}

#[tokio::test]
async fn the_server_measures_its_own_time_per_answer_at_the_socket() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut a = Account::new("timed", "pw");
    a.delay = Some(std::time::Duration::from_millis(30));
    let sim = simulator(vec![a]).await;
    for _ in 0..3 {
        let a = post(&sim.base_url(), &[("Et-App-Key", APP_KEY), ("Username", "timed"), ("Password", "pw")]).await;
        assert_eq!(a.status, 200);
    }
    // A request sent in two parts 200 ms apart, twice on one connection: each answer's time
    // runs from its request's first byte to its answer's last, so it holds the gap.
    let mut s = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    let request = format!("POST /api/token HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nEt-App-Key: {APP_KEY}\r\n");
    for _ in 0..2 {
        s.write_all(request.as_bytes()).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        s.write_all(b"Username: timed\r\nPassword: pw\r\n\r\n").await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains("\"Succeeded\"") {
            let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf)).await.unwrap().unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
    }
    // Recorded as the answer's last byte is written, which may be just after the client read it.
    let mut times = sim.server_seconds("timed");
    for _ in 0..100 {
        if times.len() == 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        times = sim.server_seconds("timed");
    }
    assert_eq!(times.len(), 5, "{times:?}");
    assert!(times[..3].iter().all(|t| (0.030..0.2).contains(t)), "{times:?}");
    assert!(times[3..].iter().all(|t| (0.230..0.5).contains(t)), "{times:?}");
    let (status, raw) = get(&format!("http://{}/_sim/server-seconds/timed", sim.addr())).await;
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Vec<f64>>(&raw).unwrap(), times);
}

/// Sends a login for `user` over a raw connection and reads until the server closes it or 5 s
/// pass: what arrived, and how the read ended.
async fn raw_login(sim: &authprobe::simulator::Simulator, user: &str) -> (Vec<u8>, std::io::Result<usize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    let request = format!(
        "POST /api/token HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nEt-App-Key: {APP_KEY}\r\nUsername: {user}\r\nPassword: pw\r\n\r\n"
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let end = loop {
        match tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf)).await {
            Err(_) => panic!("the connection stayed open; got {} bytes", got.len()),
            Ok(Ok(0)) => break Ok(0),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => break Err(e),
        }
    };
    (got, end)
}

#[tokio::test]
async fn connection_faults_cut_the_connection_itself() {
    let sim = simulator(vec![
        fault_account("closer", Fault::CloseWithoutResponse),
        fault_account("resetter", Fault::ResetMidBody),
    ])
    .await;
    let (got, end) = raw_login(&sim, "closer").await;
    assert!(got.is_empty() && end.is_ok(), "closed with nothing sent: {:?}", String::from_utf8_lossy(&got));

    let (got, end) = raw_login(&sim, "resetter").await;
    let text = String::from_utf8_lossy(&got);
    let (head, body) = text.split_once("\r\n\r\n").expect("the head arrived");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let announced: usize =
        head.lines().find_map(|l| l.strip_prefix("content-length: ")).expect("a Content-Length").parse().unwrap();
    assert!(!body.is_empty() && body.len() < announced, "{} of {announced} bytes", body.len());
    assert_eq!(end.expect_err("reset").kind(), std::io::ErrorKind::ConnectionReset);
}
