//! The admin API against a real Redis and real receivers on 127.0.0.1.

#[path = "../common.rs"]
mod common;

use std::time::Duration;

use entraguard_core::job::{DeliveryJob, Job};
use entraguard_core::queue::{DeadLetterDraft, WorkerId};
use entraguard_testkit::{HttpReceiver, RedisServer, Reply};
use serde_json::{Value, json};

use common::{TOKEN, start};

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.base)).bearer_auth(TOKEN);
        // State changes take a JSON body, `{}` when there is nothing to say.
        if method != reqwest::Method::GET {
            let b = body.unwrap_or_else(|| json!({}));
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// A GET's status and body as text, to measure it.
    async fn get_text(&self, path: &str) -> (u16, String) {
        let resp =
            self.http.get(format!("{}{path}", self.base)).bearer_auth(TOKEN).send().await.expect("request");
        (resp.status().as_u16(), resp.text().await.expect("body"))
    }
}

mod bodies;
mod dead_letters;
mod deliveries;
mod endpoints;
mod shards;
