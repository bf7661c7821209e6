//! An HTTPS front for an [`crate::HttpReceiver`]: TLS on `https://localhost:<port>` with a
//! [`TestCa`]'s server certificate, each connection's plaintext passed to the receiver's port.
//! It records the ALPN protocol each handshake settled on, so a test sees what a client
//! negotiated, and how many handshakes completed.

use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::TestCa;
use crate::net::{ServerThread, bind_localhost};

/// TLS in front of a plain HTTP receiver on 127.0.0.1; stops on drop.
pub struct HttpsFront {
    port: u16,
    /// One entry per completed handshake: the ALPN protocol agreed (`None`: no ALPN).
    handshakes: Arc<Mutex<Vec<Option<String>>>>,
    _server: ServerThread,
}

impl HttpsFront {
    /// Terminates TLS with `ca`'s server certificate (for `localhost` and `127.0.0.1`) and
    /// passes each connection to `127.0.0.1:<backend_port>`. Offers HTTP/1.1 only over ALPN:
    /// the receiver behind it speaks HTTP/1.1.
    pub fn start(ca: &TestCa, backend_port: u16) -> Self {
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
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = bind_localhost(0, "https front");
        let port = listener.local_addr().expect("local address of a bound listener").port();
        let handshakes = Arc::new(Mutex::new(Vec::new()));
        let seen = handshakes.clone();
        let server = ServerThread::spawn("https-front", listener, move |listener| async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, seen) = (acceptor.clone(), seen.clone());
                tokio::spawn(async move {
                    // A client that refuses the certificate ends its handshake here.
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    let alpn =
                        tls.get_ref().1.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned());
                    seen.lock().unwrap_or_else(|p| p.into_inner()).push(alpn);
                    let Ok(mut plain) = tokio::net::TcpStream::connect(("127.0.0.1", backend_port)).await
                    else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        Self { port, handshakes, _server: server }
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
