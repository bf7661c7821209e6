//! Publishes one `finding.new` event, as the scanner would.
//!
//! ```sh
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p entraguard-producer --example publish
//! ```

use entraguard_producer::{Event, Producer, ProducerConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let producer = Producer::connect(&ProducerConfig::from_url(&url)?).await?;
    let event = Event::from_json(
        br#"{
        "event": "finding.new",
        "tenant_id": "8d6310d1-5e4b-4e1c-9d7a-3f0f7a4f2b11",
        "tenant_name": "contoso.onmicrosoft.com",
        "scan_id": "scan_2026-04-28T07:00Z",
        "finding": {
            "id": "PIM-002",
            "title": "Excessive permanent privileged roles",
            "severity": "high",
            "category": "privileged-access",
            "affected": ["admin@contoso.com", "ops@contoso.com"],
            "remediation_url": "https://entraguard.example.com/api/entraguard/findings/PIM-002"
        }
    }"#,
    )?;
    let id = producer.publish(&event).await?;
    println!("{id}");
    Ok(())
}
