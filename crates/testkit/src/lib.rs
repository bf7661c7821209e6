//! The test harness for EntraGuard Notify: real parts only, never a mock. A `redis-server` of
//! the test's own on a free port in a temp dir, HTTP and SMTP receivers on 127.0.0.1 whose
//! answers are scripted and which record what they get, the workspace's freshly built binaries,
//! a `prometheus` scraping them, and `wait_until` for conditions that send no notification.

mod bins;
mod http_receiver;
mod https_front;
mod log;
mod net;
mod prometheus;
mod redis_cluster;
mod redis_server;
mod release;
mod smtp_receiver;
mod tls;
mod wait;

pub use bins::bin_path;
pub use http_receiver::{HttpReceiver, Recorded, Reply};
pub use https_front::HttpsFront;
pub use log::{TEST_LOG_VAR, test_log_filter};
pub use net::free_port;
pub use prometheus::{PrometheusServer, PrometheusServerBuilder};
pub use redis_cluster::{RedisCluster, RedisClusterBuilder};
pub use redis_server::{RedisServer, RedisServerBuilder};
pub use release::release_bin_dir;
pub use smtp_receiver::{ReceivedMail, SmtpReceiver, SmtpStage};
pub use tls::TestCa;
pub use wait::wait_until;
