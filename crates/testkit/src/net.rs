//! Sockets on 127.0.0.1: free ports, and the thread each receiver serves on. A receiver owns its
//! own thread and tokio runtime so it works from sync and async tests alike, and so `stop()` can
//! return only once the listener and every open connection are really closed.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::oneshot;

/// A port that was free on 127.0.0.1 a moment ago (bind port 0, read it, close it).
///
/// Another process may take it before you bind it; prefer handing a listener on port 0 to the
/// code under test when it accepts one.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to find a free port");
    listener.local_addr().expect("local address of a bound listener").port()
}

/// Binds 127.0.0.1:`port` (0 for any) and listens. `SO_REUSEADDR` lets a receiver come back on
/// its old port while connections from before its stop are in TIME_WAIT; `SO_REUSEPORT` lets
/// the listener share the port with the receiver's [`PortHold`].
///
/// Port 0 is first picked by a plain `bind(0)` (no reuse flags): with `SO_REUSEPORT` set, the
/// kernel may hand a `bind(0)` a port another of our reusable sockets already has (a running
/// receiver, or a stopped one's hold), and the two would then share the port's connections
/// (`./dev stress`: a stopped server's port still accepted, 1 run in 3).
/// Between that pick and the bind, another test's outgoing connection may take the port as its
/// ephemeral source port (the testkit's own tests saw it, 1 run in 300): a port picked here is
/// then picked again, a few times.
pub(crate) fn bind_localhost(port: u16, what: &str) -> TcpListener {
    let bind = |port: u16| -> std::io::Result<TcpListener> {
        let socket = reusable_socket()?;
        socket.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)).into())?;
        socket.listen(1024)?;
        Ok(socket.into())
    };
    if port != 0 {
        return bind(port).unwrap_or_else(|e| panic!("{what}: cannot bind 127.0.0.1:{port}: {e}"));
    }
    let mut tries = 0;
    loop {
        let picked = free_port();
        match bind(picked) {
            Ok(l) => return l,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 10 => tries += 1,
            Err(e) => panic!("{what}: cannot bind 127.0.0.1:{picked}: {e}"),
        }
    }
}

fn reusable_socket() -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    Ok(socket)
}

/// Keeps a stopped receiver's port for it: a TCP socket bound to the port and never listening.
///
/// Why (issue 23, found by `./dev stress`): a stopped receiver used to close its only socket,
/// and between `stop()` and `restart()` the kernel was free to hand the port to anyone — as
/// the ephemeral source port of another test's outgoing connection, or to a `bind(0)` — and
/// the restart then failed with "Address already in use" (1 run in 5 beside a CPU hog). A bound
/// socket keeps the port out of both allocations (Linux skips ports with a bound socket when it
/// picks one), while connections to it are still refused, because nothing listens. The
/// receiver's listeners set `SO_REUSEPORT` like the hold, so they can bind beside it; no other
/// socket can.
#[derive(Debug)]
pub(crate) struct PortHold(#[allow(dead_code)] Socket);

impl PortHold {
    pub(crate) fn new(port: u16, what: &str) -> PortHold {
        let hold = || -> std::io::Result<Socket> {
            let socket = reusable_socket()?;
            socket.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)).into())?;
            Ok(socket)
        };
        PortHold(hold().unwrap_or_else(|e| panic!("{what}: cannot hold 127.0.0.1:{port}: {e}")))
    }
}

/// Locks `m`, ignoring poisoning: a test that panicked while holding a receiver's lock must not
/// turn every later assertion into an unrelated `PoisonError`.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A server future running on a thread of its own, with a current-thread runtime.
pub(crate) struct ServerThread {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    /// A second handle on the listening socket, to shut it down at [`ServerThread::stop`].
    listening: Option<Socket>,
}

impl ServerThread {
    /// Runs `serve(listener)` until [`ServerThread::stop`]. Everything `serve` spawns (one task
    /// per connection) lives on the same runtime and is dropped with it.
    pub(crate) fn spawn<F, Fut>(name: &str, listener: TcpListener, serve: F) -> Self
    where
        F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        listener.set_nonblocking(true).expect("set the listener non-blocking");
        let listening = Socket::from(listener.try_clone().expect("a second handle on the listener"));
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("build a receiver runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("register the listener with tokio");
                    tokio::select! {
                        () = serve(listener) => {}
                        _ = stop_rx => {}
                    }
                });
                // Dropping the runtime drops every connection task and so closes their sockets:
                // a stopped receiver must not keep answering over a client's pooled connection.
                drop(runtime);
            })
            .expect("spawn a receiver thread");
        Self { stop: Some(stop_tx), thread: Some(thread), listening: Some(listening) }
    }

    /// Stops serving and waits until the listener and all connections are closed.
    ///
    /// The listening socket is shut down before it is closed. Closing our descriptors is not
    /// enough: a process another test spawns at that moment holds a copy of every descriptor
    /// between its fork and its exec (close-on-exec closes them only at the exec), and beside a
    /// CPU hog that window lasts long enough for a connect to this port to be accepted by the
    /// copy (`RUST_TEST_THREADS=6` beside `stress-ng`: 5 runs in 20 of this module's test).
    /// `shutdown` stops the socket itself listening, whoever holds it.
    pub(crate) fn stop(&mut self) {
        if let Some(listening) = self.listening.take() {
            // Linux answers ENOTCONN while it stops the listening socket; nothing to report.
            let _ = listening.shutdown(std::net::Shutdown::Both);
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            // A panic on the server thread has already been printed; nothing more to report.
            let _ = thread.join();
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether nothing listens on 127.0.0.1:`port`: a connection is refused, or it is the kernel's
/// TCP self-connection (a connect from the port to itself, possible once the port is free,
/// since it lies in the ephemeral range): what the stop tests of the receivers assert.
#[cfg(test)]
pub(crate) fn nothing_listens(port: u16) -> bool {
    match std::net::TcpStream::connect(("127.0.0.1", port)) {
        Err(_) => true,
        Ok(s) => s.local_addr().is_ok_and(|a| a.port() == port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_is_bindable() {
        let port = free_port();
        assert_ne!(port, 0);
        let listener = bind_localhost(port, "test");
        assert_eq!(listener.local_addr().expect("addr").port(), port);
    }

    #[test]
    fn stop_closes_the_listener_before_returning() {
        use std::io::Read;
        let listener = bind_localhost(0, "test");
        let port = listener.local_addr().expect("addr").port();
        // Our server says who it is, so the connect before the stop is known to reach it.
        let mut server = ServerThread::spawn("test-server", listener, |l| async move {
            while let Ok((mut s, _)) = l.accept().await {
                let _ = tokio::io::AsyncWriteExt::write_all(&mut s, b"S").await;
            }
        });
        let ours = |mut s: std::net::TcpStream| {
            s.set_read_timeout(Some(std::time::Duration::from_millis(500))).expect("timeout");
            let mut b = [0u8; 1];
            matches!(s.read(&mut b), Ok(1) if b == *b"S")
        };
        let before = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connects");
        assert!(ours(before), "the running server answers");
        // Held, as a receiver holds its port, so no other test's server can take the freed
        // port and answer the connect below.
        let _hold = PortHold::new(port, "test");
        server.stop();
        assert!(nothing_listens(port), "a stopped server must refuse connections");
    }
}
