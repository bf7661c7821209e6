//! A real SMTP server (the RFC 5321 subset a relay client uses) on 127.0.0.1: EHLO, AUTH PLAIN
//! and LOGIN checked against configured credentials, MAIL, RCPT, DATA with dot-unstuffing,
//! RSET, NOOP, QUIT. Failures can be scripted per stage (451, 550, …); messages are recorded.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Where a scripted failure answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpStage {
    Mail,
    Rcpt,
    /// The reply after the message content.
    Data,
}

/// A message as the server received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    pub from: String,
    pub to: Vec<String>,
    /// The message content, dot-unstuffed, CRLF line ends.
    pub data: Vec<u8>,
    pub auth_user: Option<String>,
}

struct Shared {
    credentials: Option<(String, String)>,
    failures: Mutex<VecDeque<(SmtpStage, u16, String)>>,
    messages: Mutex<Vec<ReceivedMail>>,
    count: watch::Sender<usize>,
}

/// A scriptable SMTP server.
pub struct SmtpReceiver {
    shared: Arc<Shared>,
    port: u16,
    task: JoinHandle<()>,
}

impl SmtpReceiver {
    /// No AUTH required.
    pub fn start() -> Self {
        Self::new(None)
    }

    /// AUTH required, with these credentials.
    pub fn with_auth(user: &str, password: &str) -> Self {
        Self::new(Some((user.to_owned(), password.to_owned())))
    }

    fn new(credentials: Option<(String, String)>) -> Self {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind smtp");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let port = std_listener.local_addr().expect("addr").port();
        let listener = TcpListener::from_std(std_listener).expect("tokio listener");
        let shared = Arc::new(Shared {
            credentials,
            failures: Mutex::new(VecDeque::new()),
            messages: Mutex::new(Vec::new()),
            count: watch::channel(0).0,
        });
        let s = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let _ = session(stream, s).await;
                });
            }
        });
        Self { shared, port, task }
    }

    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The next `times` transactions answer `code text` at `stage`.
    pub fn fail_next(&self, stage: SmtpStage, code: u16, text: &str, times: usize) {
        let mut f = self.shared.failures.lock().expect("lock");
        for _ in 0..times {
            f.push_back((stage, code, text.to_owned()));
        }
    }

    pub fn messages(&self) -> Vec<ReceivedMail> {
        self.shared.messages.lock().expect("lock").clone()
    }

    /// Waits until at least `n` messages were accepted.
    pub async fn wait_for_messages(&self, n: usize, deadline: Duration) -> Vec<ReceivedMail> {
        let mut rx = self.shared.count.subscribe();
        if tokio::time::timeout(deadline, rx.wait_for(|c| *c >= n)).await.is_err() {
            panic!("expected {n} mails within {deadline:?}, got {}", self.messages().len());
        }
        self.messages()
    }
}

impl Drop for SmtpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn scripted(shared: &Shared, stage: SmtpStage) -> Option<(u16, String)> {
    let mut f = shared.failures.lock().expect("lock");
    if f.front().is_some_and(|(s, _, _)| *s == stage) {
        return f.pop_front().map(|(_, c, t)| (c, t));
    }
    None
}

fn b64decode(s: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut buf = 0u32;
    let mut bits = 0;
    for c in s.trim().bytes() {
        if c == b'=' {
            break;
        }
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        buf = (buf << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    Some(out)
}

async fn session(stream: TcpStream, shared: Arc<Shared>) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r);
    let reply = |text: String| format!("{text}\r\n");
    w.write_all(reply("220 entraguard-testkit ESMTP ready".into()).as_bytes()).await?;
    let mut auth_user: Option<String> = None;
    let mut from: Option<String> = None;
    let mut to: Vec<String> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end_matches(['\r', '\n']).to_owned();
        let upper = cmd.to_ascii_uppercase();
        let answer: String = if upper.starts_with("EHLO") {
            "250-entraguard-testkit\r\n250-AUTH PLAIN LOGIN\r\n250-8BITMIME\r\n250 SIZE 10485760".into()
        } else if upper.starts_with("HELO") {
            "250 entraguard-testkit".into()
        } else if upper.starts_with("AUTH PLAIN") {
            let initial = cmd.get(10..).map(str::trim).unwrap_or("").to_owned();
            let payload = if initial.is_empty() {
                w.write_all(b"334 \r\n").await?;
                let mut l = String::new();
                lines.read_line(&mut l).await?;
                l.trim().to_owned()
            } else {
                initial
            };
            let decoded = b64decode(&payload).unwrap_or_default();
            let parts: Vec<String> =
                decoded.split(|b| *b == 0).map(|p| String::from_utf8_lossy(p).into_owned()).collect();
            let (user, pass) =
                (parts.get(1).cloned().unwrap_or_default(), parts.get(2).cloned().unwrap_or_default());
            check_auth(&shared, &user, &pass, &mut auth_user)
        } else if upper.starts_with("AUTH LOGIN") {
            w.write_all(b"334 VXNlcm5hbWU6\r\n").await?;
            let mut u = String::new();
            lines.read_line(&mut u).await?;
            w.write_all(b"334 UGFzc3dvcmQ6\r\n").await?;
            let mut p = String::new();
            lines.read_line(&mut p).await?;
            let user = String::from_utf8_lossy(&b64decode(&u).unwrap_or_default()).into_owned();
            let pass = String::from_utf8_lossy(&b64decode(&p).unwrap_or_default()).into_owned();
            check_auth(&shared, &user, &pass, &mut auth_user)
        } else if upper.starts_with("MAIL FROM:") {
            if shared.credentials.is_some() && auth_user.is_none() {
                "530 5.7.0 Authentication required".into()
            } else if let Some((code, text)) = scripted(&shared, SmtpStage::Mail) {
                format!("{code} {text}")
            } else {
                from = Some(addr(&cmd[10..]));
                to.clear();
                "250 2.1.0 OK".into()
            }
        } else if upper.starts_with("RCPT TO:") {
            if from.is_none() {
                "503 5.5.1 MAIL first".into()
            } else if let Some((code, text)) = scripted(&shared, SmtpStage::Rcpt) {
                format!("{code} {text}")
            } else {
                to.push(addr(&cmd[8..]));
                "250 2.1.5 OK".into()
            }
        } else if upper == "DATA" {
            if to.is_empty() {
                "503 5.5.1 RCPT first".into()
            } else {
                w.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await?;
                let mut data = Vec::new();
                loop {
                    let mut l = String::new();
                    if lines.read_line(&mut l).await? == 0 {
                        return Ok(());
                    }
                    let content = l.trim_end_matches(['\r', '\n']);
                    if content == "." {
                        break;
                    }
                    let unstuffed =
                        content.strip_prefix('.').filter(|_| content.starts_with("..")).unwrap_or(content);
                    data.extend_from_slice(unstuffed.as_bytes());
                    data.extend_from_slice(b"\r\n");
                }
                if let Some((code, text)) = scripted(&shared, SmtpStage::Data) {
                    format!("{code} {text}")
                } else {
                    let mail = ReceivedMail {
                        from: from.take().unwrap_or_default(),
                        to: std::mem::take(&mut to),
                        data,
                        auth_user: auth_user.clone(),
                    };
                    let mut msgs = shared.messages.lock().expect("lock");
                    msgs.push(mail);
                    shared.count.send_replace(msgs.len());
                    "250 2.0.0 OK queued".into()
                }
            }
        } else if upper == "RSET" {
            from = None;
            to.clear();
            "250 2.0.0 OK".into()
        } else if upper == "NOOP" {
            "250 2.0.0 OK".into()
        } else if upper == "QUIT" {
            w.write_all(b"221 2.0.0 Bye\r\n").await?;
            return Ok(());
        } else {
            "502 5.5.2 Command not recognized".into()
        };
        w.write_all(reply(answer).as_bytes()).await?;
    }
}

fn check_auth(shared: &Shared, user: &str, pass: &str, auth_user: &mut Option<String>) -> String {
    match &shared.credentials {
        Some((u, p)) if u == user && p == pass => {
            *auth_user = Some(user.to_owned());
            "235 2.7.0 Authentication successful".into()
        }
        Some(_) => "535 5.7.8 Authentication credentials invalid".into(),
        None => {
            *auth_user = Some(user.to_owned());
            "235 2.7.0 Authentication successful".into()
        }
    }
}

fn addr(s: &str) -> String {
    let s = s.trim();
    let inner = s.split_whitespace().next().unwrap_or("");
    inner.trim_start_matches('<').trim_end_matches('>').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn converse(port: u16, lines: &[&str]) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
        for l in lines {
            s.write_all(format!("{l}\r\n").as_bytes()).await.expect("write");
        }
        let mut out = String::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_string(&mut out)).await;
        out
    }

    #[tokio::test]
    async fn auth_plain_and_dot_unstuffing() {
        let srv = SmtpReceiver::with_auth("alice", "s3cret");
        // "\0alice\0s3cret" in base64
        let out = converse(
            srv.port(),
            &[
                "EHLO t",
                "AUTH PLAIN AGFsaWNlAHMzY3JldA==",
                "MAIL FROM:<a@x.com>",
                "RCPT TO:<b@y.com>",
                "DATA",
                "Subject: hi",
                "",
                "..dot",
                ".",
                "QUIT",
            ],
        )
        .await;
        assert!(out.contains("235"), "{out}");
        let got = srv.wait_for_messages(1, Duration::from_secs(2)).await;
        assert_eq!(got[0].from, "a@x.com");
        assert_eq!(got[0].to, vec!["b@y.com".to_owned()]);
        assert_eq!(got[0].auth_user.as_deref(), Some("alice"));
        assert!(String::from_utf8_lossy(&got[0].data).contains("\r\n.dot\r\n"));
    }

    #[tokio::test]
    async fn wrong_password_and_scripted_failures() {
        let srv = SmtpReceiver::with_auth("alice", "s3cret");
        let out =
            converse(srv.port(), &["EHLO t", "AUTH PLAIN AGFsaWNlAHdyb25n", "MAIL FROM:<a@x.com>", "QUIT"])
                .await;
        assert!(out.contains("535 5.7.8") && out.contains("530"), "{out}");
        let open = SmtpReceiver::start();
        open.fail_next(SmtpStage::Rcpt, 550, "5.1.1 no such user", 1);
        let out =
            converse(open.port(), &["HELO t", "MAIL FROM:<a@x.com>", "RCPT TO:<b@y.com>", "QUIT"]).await;
        assert!(out.contains("550 5.1.1 no such user"), "{out}");
        assert!(open.messages().is_empty());
    }
}
