//! The Redis commands one endpoint costs, counted from `MONITOR` while a run goes on: every
//! command naming it (its keys, or a job addressed to it), and every command a script runs when
//! the script's call names it (a park, a release, an admission, a breaker report). A fetch that
//! happens to take one of its jobs off the ready list is not counted (its `LMOVE` names only the
//! lists): one command per delivery released from its lane, at most.

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A `MONITOR` connection counting one endpoint's commands until [`Monitor::finish`].
pub(super) struct Monitor {
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<u64>>,
}

impl Monitor {
    /// Starts counting the commands naming `needle` on the Redis at `url` (a plain
    /// `redis://host:port` URL: the benchmark's own Redis).
    pub(super) async fn start(url: &str, needle: String) -> anyhow::Result<Monitor> {
        let addr = url
            .strip_prefix("redis://")
            .and_then(|rest| rest.split('/').next())
            .ok_or_else(|| anyhow::anyhow!("counting one endpoint's commands needs a plain redis:// URL"))?;
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(b"MONITOR\r\n").await?;
        let mut lines = BufReader::new(stream).lines();
        let first = lines.next_line().await?.unwrap_or_default();
        anyhow::ensure!(first == "+OK", "MONITOR refused: {first}");
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut count = 0u64;
            let mut group_named = false;
            loop {
                tokio::select! {
                    _ = &mut stopped => return Ok(count),
                    line = lines.next_line() => {
                        let Some(line) = line? else { return Ok(count) };
                        let named = line.contains(needle.as_str());
                        if line.contains(" lua] ") {
                            if group_named || named {
                                count += 1;
                            }
                        } else {
                            group_named = named;
                            if named {
                                count += 1;
                            }
                        }
                    }
                }
            }
        });
        Ok(Monitor { stop, task })
    }

    /// Stops counting: the commands counted.
    pub(super) async fn finish(self) -> anyhow::Result<u64> {
        let _ = self.stop.send(());
        self.task.await?
    }
}
