//! A real SMTP server (the RFC 5321 subset a relay client uses) on 127.0.0.1: EHLO/HELO, AUTH
//! PLAIN and LOGIN checked against configured credentials, MAIL, RCPT, DATA with dot-unstuffing,
//! RSET, NOOP, QUIT. Failures can be scripted per stage (451, 550, …); accepted messages are
//! recorded and tests wait for them without polling.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::watch;

use crate::net::{PortHold, ServerThread, bind_localhost, lock};

/// The largest message accepted, advertised as `SIZE`.
const MAX_SIZE: usize = 10 * 1024 * 1024;
const HOSTNAME: &str = "entraguard-testkit";

/// Where a scripted failure answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SmtpStage {
    /// The reply to `MAIL FROM`.
    Mail,
    /// The reply to one `RCPT TO` (each recipient is one occurrence).
    Rcpt,
    /// The reply after the message content (the final `.`).
    Data,
}

/// A message as the server accepted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    /// The envelope sender (`MAIL FROM`), without angle brackets; empty for `<>`.
    pub from: String,
    /// The envelope recipients that were accepted, in order.
    pub to: Vec<String>,
    /// The message content, dot-unstuffed, lines ending in CRLF, without the final `.`.
    pub data: Vec<u8>,
    /// The user the session authenticated as, if it did.
    pub auth_user: Option<String>,
}

struct Shared {
    credentials: Option<(String, String)>,
    failures: Mutex<HashMap<SmtpStage, VecDeque<(u16, String)>>>,
    messages: Mutex<Vec<ReceivedMail>>,
    /// The number of accepted messages; waiters subscribe to it.
    count: watch::Sender<usize>,
}

impl Shared {
    fn scripted_failure(&self, stage: SmtpStage) -> Option<String> {
        let mut failures = lock(&self.failures);
        let (code, text) = failures.get_mut(&stage)?.pop_front()?;
        Some(format!("{code} {text}"))
    }

    fn accept(&self, mail: ReceivedMail) {
        let n = {
            let mut messages = lock(&self.messages);
            messages.push(mail);
            messages.len()
        };
        // Outside the messages' lock: a waiter may hold the counter while it reads them.
        self.count.send_if_modified(|c| {
            let grew = n > *c;
            if grew {
                *c = n;
            }
            grew
        });
    }
}

/// A scriptable SMTP server on `127.0.0.1:<port>`, without TLS; stops on drop.
pub struct SmtpReceiver {
    shared: Arc<Shared>,
    port: u16,
    /// `None` while stopped.
    server: Mutex<Option<ServerThread>>,
    /// The port stays ours while stopped, so `restart` finds it free (see [`PortHold`]).
    _hold: PortHold,
}

impl fmt::Debug for SmtpReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpReceiver")
            .field("port", &self.port)
            .field("auth", &self.shared.credentials.is_some())
            .field("messages", &lock(&self.shared.messages).len())
            .finish()
    }
}

impl SmtpReceiver {
    /// No AUTH required (an AUTH attempt is accepted whatever the credentials).
    pub fn start() -> Self {
        Self::new(None)
    }

    /// AUTH required with these credentials: `MAIL` before a successful AUTH gets `530`.
    pub fn with_auth(user: &str, password: &str) -> Self {
        Self::new(Some((user.to_owned(), password.to_owned())))
    }

    fn new(credentials: Option<(String, String)>) -> Self {
        let listener = bind_localhost(0, "smtp receiver");
        let port = listener.local_addr().expect("local address of a bound listener").port();
        let receiver = Self {
            shared: Arc::new(Shared {
                credentials,
                failures: Mutex::new(HashMap::new()),
                messages: Mutex::new(Vec::new()),
                count: watch::Sender::new(0),
            }),
            port,
            server: Mutex::new(None),
            _hold: PortHold::new(port, "smtp receiver"),
        };
        receiver.serve(listener);
        receiver
    }

    fn serve(&self, listener: std::net::TcpListener) {
        let shared = self.shared.clone();
        let thread = ServerThread::spawn("smtp-receiver", listener, move |listener| async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        let shared = shared.clone();
                        // A session that breaks off (client gone, bad bytes) ends on its own.
                        tokio::spawn(async move { Session::new(stream, shared).run().await });
                    }
                    // E.g. out of file descriptors: don't spin, try again shortly.
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        });
        *lock(&self.server) = Some(thread);
    }

    /// `"127.0.0.1"`.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The next `times` occurrences of `stage` answer `<code> <text>` instead of accepting,
    /// e.g. `fail_next(SmtpStage::Rcpt, 451, "4.3.0 try again later", 1)`. A `421` also closes
    /// the connection, as a real server does.
    pub fn fail_next(&self, stage: SmtpStage, code: u16, text: &str, times: usize) {
        let mut failures = lock(&self.shared.failures);
        let queue = failures.entry(stage).or_default();
        queue.extend(std::iter::repeat_n((code, text.to_owned()), times));
    }

    /// Every accepted message so far, in order.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        lock(&self.shared.messages).clone()
    }

    /// Waits until at least `n` messages were accepted and returns all of them; panics with
    /// `expected N messages within D, got M: <summary>` when `deadline` passes first.
    pub async fn wait_for_messages(&self, n: usize, deadline: Duration) -> Vec<ReceivedMail> {
        let mut count = self.shared.count.subscribe();
        // Drop `wait_for`'s guard on the counter before reading the messages (see `accept`).
        let arrived = tokio::time::timeout(deadline, count.wait_for(|c| *c >= n)).await.map(|r| r.is_ok());
        let got = self.messages();
        if arrived.is_err() {
            let summary: Vec<String> = got
                .iter()
                .take(10)
                .map(|m| format!("{} -> {:?} ({} bytes)", m.from, m.to, m.data.len()))
                .collect();
            panic!("expected {n} messages within {deadline:?}, got {}: {summary:?}", got.len());
        }
        got
    }

    /// Stops listening and closes every session; until `restart`, connections are refused.
    pub fn stop(&self) {
        let server = lock(&self.server).take();
        if let Some(mut server) = server {
            server.stop();
        }
    }

    /// Serves again on the same port (stopping first if needed).
    pub fn restart(&self) {
        self.stop();
        self.serve(bind_localhost(self.port, "smtp receiver restart"));
    }
}

impl Drop for SmtpReceiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the session does after a command.
enum Next {
    Continue,
    Close,
}

/// One SMTP session. Generic over the stream so STARTTLS can be added later: on `STARTTLS`,
/// answer 220, discard anything buffered (RFC 3207), wrap `io.into_inner()` in a TLS acceptor
/// and run a fresh `Session` (un-greeted, un-authenticated) over the TLS stream.
struct Session<S> {
    io: BufReader<S>,
    shared: Arc<Shared>,
    greeted: bool,
    auth_user: Option<String>,
    from: Option<String>,
    to: Vec<String>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    fn new(stream: S, shared: Arc<Shared>) -> Self {
        Self {
            io: BufReader::new(stream),
            shared,
            greeted: false,
            auth_user: None,
            from: None,
            to: Vec::new(),
        }
    }

    async fn run(mut self) -> std::io::Result<()> {
        self.reply(&format!("220 {HOSTNAME} ESMTP ready")).await?;
        while let Some(line) = self.read_line().await? {
            if let Next::Close = self.command(&String::from_utf8_lossy(&line)).await? {
                break;
            }
        }
        Ok(())
    }

    /// One line without its line ending; `None` at end of stream.
    async fn read_line(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let mut line = Vec::new();
        if self.io.read_until(b'\n', &mut line).await? == 0 {
            return Ok(None);
        }
        if line.ends_with(b"\n") {
            line.pop();
        }
        if line.ends_with(b"\r") {
            line.pop();
        }
        Ok(Some(line))
    }

    /// Writes `text` (one or more lines separated by `\n`) with CRLF line ends.
    async fn reply(&mut self, text: &str) -> std::io::Result<()> {
        let mut out = String::new();
        for line in text.split('\n') {
            out.push_str(line);
            out.push_str("\r\n");
        }
        let stream = self.io.get_mut();
        stream.write_all(out.as_bytes()).await?;
        stream.flush().await
    }

    fn reset_transaction(&mut self) {
        self.from = None;
        self.to.clear();
    }

    async fn command(&mut self, line: &str) -> std::io::Result<Next> {
        let (verb, arg) = match line.split_once(' ') {
            Some((verb, arg)) => (verb.to_ascii_uppercase(), arg.trim()),
            None => (line.trim().to_ascii_uppercase(), ""),
        };
        let answer = match verb.as_str() {
            "EHLO" | "HELO" if arg.is_empty() => "501 5.5.4 a domain or address is required".into(),
            "EHLO" => {
                self.greeted = true;
                self.reset_transaction();
                format!(
                    "250-{HOSTNAME} greets {arg}\n250-AUTH PLAIN LOGIN\n250-8BITMIME\n250 SIZE {MAX_SIZE}"
                )
            }
            "HELO" => {
                self.greeted = true;
                self.reset_transaction();
                format!("250 {HOSTNAME}")
            }
            "AUTH" => self.auth(arg).await?,
            "MAIL" => self.mail(arg),
            "RCPT" => self.rcpt(arg),
            "DATA" => return self.data().await,
            "RSET" => {
                self.reset_transaction();
                "250 2.0.0 OK".into()
            }
            "NOOP" => "250 2.0.0 OK".into(),
            "QUIT" => {
                self.reply("221 2.0.0 bye").await?;
                return Ok(Next::Close);
            }
            "STARTTLS" | "VRFY" | "EXPN" | "HELP" => "502 5.5.1 command not implemented".into(),
            _ => "500 5.5.2 command not recognized".into(),
        };
        self.reply(&answer).await?;
        Ok(if answer.starts_with("421") { Next::Close } else { Next::Continue })
    }

    async fn auth(&mut self, arg: &str) -> std::io::Result<String> {
        if !self.greeted {
            return Ok("503 5.5.1 EHLO first".into());
        }
        if self.auth_user.is_some() {
            return Ok("503 5.5.1 already authenticated".into());
        }
        if self.from.is_some() {
            return Ok("503 5.5.1 AUTH not allowed during a mail transaction".into());
        }
        let (mechanism, initial) = match arg.split_once(' ') {
            Some((m, i)) => (m.to_ascii_uppercase(), Some(i.trim())),
            None => (arg.to_ascii_uppercase(), None),
        };
        let credentials = match mechanism.as_str() {
            // authzid \0 authcid \0 password; "=" is an empty initial response.
            "PLAIN" => {
                let Some(response) = self.auth_response(initial, "").await? else {
                    return Ok("501 5.7.0 authentication cancelled or not base64".into());
                };
                let parts: Vec<&[u8]> = response.split(|b| *b == 0).collect();
                match parts.as_slice() {
                    [_authzid, user, password] => (utf8(user), utf8(password)),
                    _ => return Ok("501 5.5.2 malformed PLAIN response".into()),
                }
            }
            // Base64 "Username:" and "Password:" challenges; some clients send the user inline.
            "LOGIN" => {
                let Some(user) = self.auth_response(initial, "VXNlcm5hbWU6").await? else {
                    return Ok("501 5.7.0 authentication cancelled or not base64".into());
                };
                let Some(password) = self.auth_response(None, "UGFzc3dvcmQ6").await? else {
                    return Ok("501 5.7.0 authentication cancelled or not base64".into());
                };
                (utf8(&user), utf8(&password))
            }
            _ => return Ok("504 5.5.4 unrecognized authentication type".into()),
        };
        let (user, password) = credentials;
        let accepted = match &self.shared.credentials {
            Some((u, p)) => *u == user && *p == password,
            None => true,
        };
        Ok(if accepted {
            self.auth_user = Some(user);
            "235 2.7.0 Authentication successful".into()
        } else {
            "535 5.7.8 Authentication credentials invalid".into()
        })
    }

    /// The decoded initial response if there is one, else the decoded answer to a `334`
    /// challenge. `None` when the client cancels (`*`), hangs up or sends bad base64.
    async fn auth_response(
        &mut self,
        initial: Option<&str>,
        challenge: &str,
    ) -> std::io::Result<Option<Vec<u8>>> {
        let encoded = match initial {
            Some("=") => return Ok(Some(Vec::new())),
            Some(inline) => inline.to_owned(),
            None => {
                self.reply(&format!("334 {challenge}")).await?;
                match self.read_line().await? {
                    Some(line) => String::from_utf8_lossy(&line).trim().to_owned(),
                    None => return Ok(None),
                }
            }
        };
        if encoded == "*" {
            return Ok(None);
        }
        Ok(BASE64.decode(encoded).ok())
    }

    fn mail(&mut self, arg: &str) -> String {
        if !self.greeted {
            return "503 5.5.1 EHLO first".into();
        }
        if self.shared.credentials.is_some() && self.auth_user.is_none() {
            return "530 5.7.0 Authentication required".into();
        }
        if self.from.is_some() {
            return "503 5.5.1 nested MAIL command".into();
        }
        let Some((from, params)) = path_argument(arg, "FROM:") else {
            return "501 5.5.4 syntax: MAIL FROM:<address>".into();
        };
        let declared_size = params
            .split_whitespace()
            .find_map(|p| p.to_ascii_uppercase().strip_prefix("SIZE=").and_then(|n| n.parse::<usize>().ok()));
        if declared_size.is_some_and(|n| n > MAX_SIZE) {
            return "552 5.3.4 message size exceeds fixed limit".into();
        }
        if let Some(failure) = self.shared.scripted_failure(SmtpStage::Mail) {
            return failure;
        }
        self.from = Some(from);
        "250 2.1.0 OK".into()
    }

    fn rcpt(&mut self, arg: &str) -> String {
        if self.from.is_none() {
            return "503 5.5.1 need MAIL first".into();
        }
        let Some((to, _params)) = path_argument(arg, "TO:") else {
            return "501 5.5.4 syntax: RCPT TO:<address>".into();
        };
        if let Some(failure) = self.shared.scripted_failure(SmtpStage::Rcpt) {
            return failure;
        }
        self.to.push(to);
        "250 2.1.5 OK".into()
    }

    async fn data(&mut self) -> std::io::Result<Next> {
        let refusal = if self.from.is_none() {
            Some("503 5.5.1 need MAIL first")
        } else if self.to.is_empty() {
            Some("554 5.5.1 no valid recipients")
        } else {
            None
        };
        if let Some(refusal) = refusal {
            self.reply(refusal).await?;
            return Ok(Next::Continue);
        }
        self.reply("354 end data with <CR><LF>.<CR><LF>").await?;
        let mut data = Vec::new();
        loop {
            let Some(line) = self.read_line().await? else {
                return Ok(Next::Close); // hung up mid-message: nothing is delivered
            };
            if line == b"." {
                break;
            }
            // RFC 5321 4.5.2: a leading dot on any other line was added by the client.
            let content = line.strip_prefix(b".").unwrap_or(&line);
            data.extend_from_slice(content);
            data.extend_from_slice(b"\r\n");
        }
        let answer = if data.len() > MAX_SIZE {
            "552 5.3.4 message size exceeds fixed limit".to_owned()
        } else if let Some(failure) = self.shared.scripted_failure(SmtpStage::Data) {
            failure
        } else {
            self.shared.accept(ReceivedMail {
                from: self.from.take().unwrap_or_default(),
                to: std::mem::take(&mut self.to),
                data,
                auth_user: self.auth_user.clone(),
            });
            "250 2.0.0 OK queued".to_owned()
        };
        self.reset_transaction();
        self.reply(&answer).await?;
        Ok(if answer.starts_with("421") { Next::Close } else { Next::Continue })
    }
}

fn utf8(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Splits `FROM:<a@b> SIZE=10` (the keyword matched case-insensitively, a space after the colon
/// tolerated) into the address without brackets and the parameters.
fn path_argument<'a>(arg: &'a str, keyword: &str) -> Option<(String, &'a str)> {
    let head = arg.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg[keyword.len()..].trim_start();
    if let Some(bracketed) = rest.strip_prefix('<') {
        let (address, params) = bracketed.split_once('>')?;
        Some((address.to_owned(), params.trim()))
    } else {
        let (address, params) = rest.split_once(' ').unwrap_or((rest, ""));
        (!address.is_empty()).then(|| (address.to_owned(), params.trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpStream;

    /// A client speaking raw SMTP: sends a line, reads the reply (all lines of a multi-line one).
    struct Client {
        io: BufReader<TcpStream>,
    }

    impl Client {
        async fn connect(port: u16) -> (Client, String) {
            let stream = TcpStream::connect(("127.0.0.1", port)).await.expect("connect to the smtp receiver");
            let mut client = Client { io: BufReader::new(stream) };
            let greeting = client.read_reply().await;
            (client, greeting)
        }

        async fn read_reply(&mut self) -> String {
            let mut reply = String::new();
            loop {
                let mut line = String::new();
                let n = tokio::time::timeout(Duration::from_secs(5), self.io.read_line(&mut line))
                    .await
                    .expect("a reply within 5 s")
                    .expect("read a reply");
                assert!(n > 0, "the server hung up; so far: {reply:?}");
                reply.push_str(&line);
                // "250-..." continues, "250 ..." ends a reply.
                if line.as_bytes().get(3) != Some(&b'-') {
                    return reply;
                }
            }
        }

        async fn send(&mut self, line: &str) {
            self.io.get_mut().write_all(format!("{line}\r\n").as_bytes()).await.expect("write a command");
        }

        async fn say(&mut self, line: &str) -> String {
            self.send(line).await;
            self.read_reply().await
        }

        async fn expect(&mut self, line: &str, code: &str) -> String {
            let reply = self.say(line).await;
            assert!(reply.starts_with(code), "{line:?} -> expected {code}, got {reply:?}");
            reply
        }
    }

    fn plain(user: &str, password: &str) -> String {
        BASE64.encode(format!("\0{user}\0{password}"))
    }

    #[tokio::test]
    async fn auth_plain_then_a_message_with_dot_unstuffing() {
        let smtp = SmtpReceiver::with_auth("notify", "pw-123");
        assert_eq!(smtp.host(), "127.0.0.1");
        let (mut c, greeting) = Client::connect(smtp.port()).await;
        assert!(greeting.starts_with("220 "), "{greeting}");
        let ehlo = c.expect("EHLO client.test", "250").await;
        for ext in ["AUTH PLAIN LOGIN", "8BITMIME", "SIZE"] {
            assert!(ehlo.contains(ext), "EHLO lacks {ext}: {ehlo}");
        }
        c.expect("MAIL FROM:<alerts@x.test>", "530").await;
        c.expect(&format!("AUTH PLAIN {}", plain("notify", "pw-123")), "235").await;
        c.expect("MAIL FROM:<alerts@x.test> SIZE=100", "250").await;
        c.expect("RCPT TO:<soc@y.test>", "250").await;
        c.expect("RCPT TO:<ciso@y.test>", "250").await;
        c.expect("DATA", "354").await;
        for line in ["Subject: hi", "", "..leading dot", "...", "last"] {
            c.send(line).await;
        }
        c.expect(".", "250").await;
        c.expect("QUIT", "221").await;

        let mails = smtp.wait_for_messages(1, Duration::from_secs(30)).await;
        assert_eq!(
            mails,
            [ReceivedMail {
                from: "alerts@x.test".into(),
                to: vec!["soc@y.test".into(), "ciso@y.test".into()],
                data: b"Subject: hi\r\n\r\n.leading dot\r\n..\r\nlast\r\n".to_vec(),
                auth_user: Some("notify".into()),
            }]
        );
    }

    #[tokio::test]
    async fn auth_plain_continuation_and_auth_login() {
        let smtp = SmtpReceiver::with_auth("notify", "pw-123");
        let (mut c, _) = Client::connect(smtp.port()).await;
        c.expect("EHLO t", "250").await;
        c.expect("AUTH PLAIN", "334").await;
        c.expect(&plain("notify", "pw-123"), "235").await;

        let (mut c, _) = Client::connect(smtp.port()).await;
        c.expect("EHLO t", "250").await;
        let challenge = c.expect("AUTH LOGIN", "334").await;
        assert!(challenge.contains("VXNlcm5hbWU6"), "{challenge}");
        c.expect(&BASE64.encode("notify"), "334").await;
        c.expect(&BASE64.encode("pw-123"), "235").await;
        c.expect("MAIL FROM:<>", "250").await;
        c.expect("RCPT TO:<a@b.test>", "250").await;
        c.expect("DATA", "354").await;
        c.expect("body\r\n.", "250").await;
        let mails = smtp.wait_for_messages(1, Duration::from_secs(30)).await;
        assert_eq!(mails[0].from, "");
        assert_eq!(mails[0].auth_user.as_deref(), Some("notify"));
    }

    #[tokio::test]
    async fn a_wrong_password_gets_535_and_mail_stays_refused() {
        let smtp = SmtpReceiver::with_auth("notify", "pw-123");
        let (mut c, _) = Client::connect(smtp.port()).await;
        c.expect("EHLO t", "250").await;
        let reply = c.expect(&format!("AUTH PLAIN {}", plain("notify", "wrong")), "535").await;
        assert!(reply.starts_with("535 5.7.8 Authentication credentials invalid"), "{reply}");
        c.expect("AUTH LOGIN", "334").await;
        c.expect(&BASE64.encode("notify"), "334").await;
        c.expect(&BASE64.encode("nope"), "535").await;
        c.expect("MAIL FROM:<a@x.test>", "530").await;
        c.expect("AUTH CRAM-MD5", "504").await;
        assert!(smtp.messages().is_empty());
    }

    #[tokio::test]
    async fn scripted_failures_per_stage_then_success() {
        let smtp = SmtpReceiver::start();
        smtp.fail_next(SmtpStage::Rcpt, 451, "4.3.0 try again later", 1);
        smtp.fail_next(SmtpStage::Data, 550, "5.7.1 rejected", 1);
        smtp.fail_next(SmtpStage::Mail, 421, "4.3.2 shutting down", 1);
        let (mut c, _) = Client::connect(smtp.port()).await;
        c.expect("HELO t", "250").await;
        let reply = c.expect("MAIL FROM:<a@x.test>", "421").await;
        assert!(reply.contains("4.3.2 shutting down"), "{reply}");
        let mut rest = Vec::new();
        c.io.read_to_end(&mut rest).await.expect("read to end");
        assert!(rest.is_empty(), "421 closes the connection");

        let (mut c, _) = Client::connect(smtp.port()).await;
        c.expect("HELO t", "250").await;
        c.expect("MAIL FROM:<a@x.test>", "250").await;
        let reply = c.expect("RCPT TO:<b@y.test>", "451").await;
        assert!(reply.contains("4.3.0 try again later"), "{reply}");
        c.expect("DATA", "554").await;
        c.expect("RCPT TO:<b@y.test>", "250").await;
        c.expect("DATA", "354").await;
        c.expect("first try\r\n.", "550").await;
        assert!(smtp.messages().is_empty(), "a refused message is not recorded");
        c.expect("MAIL FROM:<a@x.test>", "250").await;
        c.expect("RCPT TO:<b@y.test>", "250").await;
        c.expect("DATA", "354").await;
        c.expect("second try\r\n.", "250").await;
        c.expect("RSET", "250").await;
        c.expect("NOOP", "250").await;
        c.expect("BOGUS", "500").await;
        c.expect("RCPT TO:<b@y.test>", "503").await;
        let mails = smtp.wait_for_messages(1, Duration::from_secs(30)).await;
        assert_eq!(mails[0].data, b"second try\r\n");
        assert_eq!(mails[0].auth_user, None);
    }

    #[tokio::test]
    async fn stop_refuses_and_restart_serves_again() {
        let smtp = SmtpReceiver::start();
        smtp.stop();
        assert!(crate::net::nothing_listens(smtp.port()), "a stopped receiver refuses connections");
        smtp.restart();
        let (_, greeting) = Client::connect(smtp.port()).await;
        assert!(greeting.starts_with("220"), "{greeting}");
    }

    #[tokio::test]
    #[should_panic(expected = "expected 1 messages within 50ms, got 0")]
    async fn waiting_too_long_says_what_came() {
        SmtpReceiver::start().wait_for_messages(1, Duration::from_millis(50)).await;
    }

    #[test]
    fn path_arguments() {
        assert_eq!(path_argument("FROM:<a@b> SIZE=3", "FROM:"), Some(("a@b".into(), "SIZE=3")));
        assert_eq!(path_argument("to: <c@d>", "TO:"), Some(("c@d".into(), "")));
        assert_eq!(path_argument("FROM:<>", "FROM:"), Some((String::new(), "")));
        assert_eq!(path_argument("FROM:", "FROM:"), None);
        assert_eq!(path_argument("TO:<x", "TO:"), None);
        assert_eq!(path_argument("T", "TO:"), None);
    }
}
