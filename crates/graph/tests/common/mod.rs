//! Test set-up: a real emulator on 127.0.0.1:0 and a client pointed at it.
// Test helpers outside #[test] functions may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(dead_code)]

use igrelay_emulator::{AccountSeed, EmulatorConfig, EmulatorHandle};
use igrelay_graph::{AccountAuth, ErrorClass, GraphClient, GraphConfig, GraphError};
use serde_json::json;

pub struct Ctx {
    pub emu: EmulatorHandle,
    pub client: GraphClient,
    pub ig: String,
    pub page: String,
    pub auth: AccountAuth,
    pub page_auth: AccountAuth,
    pub seed: AccountSeed,
}

pub async fn start_with(f: impl FnOnce(&mut EmulatorConfig)) -> Ctx {
    let mut cfg = EmulatorConfig::for_tests();
    f(&mut cfg);
    let seed = cfg.accounts[0].clone();
    let emu = igrelay_emulator::spawn(cfg).await.expect("emulator starts");
    let client = GraphClient::new(GraphConfig::single_host(emu.base_url.clone())).expect("client");
    Ctx {
        ig: seed.ig_id.clone(),
        page: seed.page_id.clone(),
        auth: AccountAuth::instagram(seed.token.as_str()),
        page_auth: AccountAuth::facebook(seed.page_token.as_str()),
        emu,
        client,
        seed,
    }
}

pub async fn start() -> Ctx {
    start_with(|_| {}).await
}

impl Ctx {
    /// A user messages the account (opens the window, gives consent); returns (user id, mid).
    pub async fn dm(&self, from: &str, text: &str) -> (String, String) {
        let v = self.emu.admin.simulate_dm(&self.ig, from, text).await.expect("simulate dm");
        (v["user_id"].as_str().unwrap().to_owned(), v["mid"].as_str().unwrap().to_owned())
    }

    pub async fn comment(&self, from: &str, text: &str) -> (String, String) {
        let v = self
            .emu
            .admin
            .simulate("comment", &json!({"account": self.ig, "from": from, "text": text}))
            .await
            .expect("simulate comment");
        (v["comment_id"].as_str().unwrap().to_owned(), v["media_id"].as_str().unwrap().to_owned())
    }
}

/// Asserts the error's Meta code/subcode and class.
#[track_caller]
pub fn assert_err(e: &GraphError, code: i64, subcode: Option<i64>, class: ErrorClass) {
    assert_eq!(e.code(), Some((code, subcode)), "unexpected error: {e}");
    assert_eq!(e.class(), class, "class of {e}");
    let api = e.api().expect("api error");
    assert!(api.fbtrace_id.is_some(), "fbtrace_id missing");
}

pub fn permanent() -> ErrorClass {
    ErrorClass::Permanent
}

/// A loopback URL nothing listens on (a port just released).
pub async fn closed_port_url() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}
