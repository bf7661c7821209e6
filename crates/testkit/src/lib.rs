//! The test harness for EntraGuard Notify: real parts only. A `redis-server` of our own on a
//! free port in a temp dir, HTTP and SMTP receivers on 127.0.0.1 whose answers are scripted and
//! which record what they get, the workspace's binaries, and `wait_until` for conditions that
//! have no notification.

mod bins;
mod http_receiver;
mod redis_server;
mod smtp_receiver;
mod wait;

pub use bins::{bin_path, free_port};
pub use http_receiver::{HttpReceiver, Recorded, Reply};
pub use redis_server::{RedisServer, RedisServerBuilder};
pub use smtp_receiver::{ReceivedMail, SmtpReceiver, SmtpStage};
pub use wait::wait_until;
