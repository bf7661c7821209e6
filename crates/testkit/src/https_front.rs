//! HTTPS receivers on `https://localhost:<port>` with a [`TestCa`]'s server certificate: a
//! front for an [`crate::HttpReceiver`] (each connection's plaintext passed to the receiver's
//! port, HTTP/1.1), or an HTTP/2 receiver of its own that answers `200 ok` and records each
//! request. Either records the ALPN protocol each handshake settled on, so a test sees what a
//! client negotiated, and how many handshakes completed.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::net::{ServerThread, bind_localhost};
use crate::{Recorded, TestCa};

/// What a front does with a connection once its handshake completed.
#[derive(Clone)]
enum Behind {
    /// Passes the plaintext to an HTTP/1.1 receiver on this port.
    Receiver(u16),
    /// Serves HTTP/2 itself, recording each request here.
    Http2(Arc<Mutex<Vec<Recorded>>>),
}

/// TLS in front of a plain HTTP receiver on 127.0.0.1; stops on drop.
pub struct HttpsFront {
    port: u16,
    /// One entry per completed handshake: the ALPN protocol agreed (`None`: no ALPN).
    handshakes: Arc<Mutex<Vec<Option<String>>>>,
    behind: Behind,
    _server: ServerThread,
}

impl HttpsFront {
    /// Terminates TLS with `ca`'s server certificate (for `localhost` and `127.0.0.1`) and
    /// passes each connection to `127.0.0.1:<backend_port>`. Offers HTTP/1.1 only over ALPN:
    /// the receiver behind it speaks HTTP/1.1.
    pub fn start(ca: &TestCa, backend_port: u16) -> Self {
        Self::serve(ca, b"http/1.1", Behind::Receiver(backend_port))
    }

    /// An HTTP/2 receiver of its own (offering only `h2` over ALPN) that answers `200 ok` to
    /// every request and records it ([`HttpsFront::requests`]).
    pub fn start_h2(ca: &TestCa) -> Self {
        Self::serve(ca, b"h2", Behind::Http2(Arc::default()))
    }

    fn serve(ca: &TestCa, alpn: &[u8], behind: Behind) -> Self {
        crate::redis_server::ensure_crypto_provider();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca.cert_path())
            .expect("read the server certificate")
            .collect::<Result<_, _>>()
            .expect("parse the server certificate");
        let key = PrivateKeyDer::from_pem_file(ca.key_path()).expect("read the server key");
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("a server config for the test certificate");
        config.alpn_protocols = vec![alpn.to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = bind_localhost(0, "https front");
        let port = listener.local_addr().expect("local address of a bound listener").port();
        let handshakes = Arc::new(Mutex::new(Vec::new()));
        let seen = handshakes.clone();
        let served = behind.clone();
        let server = ServerThread::spawn("https-front", listener, move |listener| async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, seen, behind) = (acceptor.clone(), seen.clone(), served.clone());
                tokio::spawn(async move {
                    // A client that refuses the certificate ends its handshake here.
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let alpn =
                        tls.get_ref().1.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned());
                    seen.lock().unwrap_or_else(|p| p.into_inner()).push(alpn);
                    match behind {
                        Behind::Receiver(port) => pass_to(tls, port).await,
                        Behind::Http2(log) => serve_h2(tls, log).await,
                    }
                });
            }
        });
        Self { port, handshakes, behind, _server: server }
    }

    /// What the HTTP/2 receiver got, in arrival order (nothing for a front of an HTTP
    /// receiver: that receiver records its requests). Over HTTP/2 the `host` header is the
    /// request's `:authority`, recorded as `host`.
    pub fn requests(&self) -> Vec<Recorded> {
        match &self.behind {
            Behind::Http2(log) => log.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            Behind::Receiver(_) => Vec::new(),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `https://localhost:<port><path>`: the name the certificate carries.
    pub fn url_for(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    /// The ALPN protocol of each completed handshake, in order.
    pub fn handshakes(&self) -> Vec<Option<String>> {
        self.handshakes.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Copies a connection's plaintext to and from the HTTP receiver on `port`.
async fn pass_to(mut tls: TlsStream<tokio::net::TcpStream>, port: u16) {
    let Ok(mut plain) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else { return };
    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
}

/// Serves one HTTP/2 connection: every request answered `200 ok` and recorded in `log`.
async fn serve_h2(tls: TlsStream<tokio::net::TcpStream>, log: Arc<Mutex<Vec<Recorded>>>) {
    let service =
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let log = log.clone();
            async move {
                let (parts, body) = request.into_parts();
                let body = body.collect().await?.to_bytes();
                let mut headers: Vec<(String, String)> = Vec::new();
                if let Some(authority) = parts.uri.authority() {
                    headers.push(("host".to_owned(), authority.to_string()));
                }
                headers.extend(parts.headers.iter().map(|(k, v)| {
                    (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned())
                }));
                log.lock().unwrap_or_else(|p| p.into_inner()).push(Recorded {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_owned(),
                    headers,
                    body: body.to_vec(),
                    received_at: Instant::now(),
                });
                Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from_static(b"ok"))))
            }
        });
    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(tls), service)
        .await;
}
