//! `host::net`: TCP and Unix-domain sockets on host tasks — connect / accept / read / write /
//! EOF / reset / refused, host-aware cancellation (nothing lost, the descriptor closed), guest
//! deadlines around hung connects and reads on the virtual clock, and 1,000 connections with
//! the descriptor count flat.
//!
//! The tests count this process's open descriptors (`/proc/self/fd`), so each holds one lock.

mod common;

use std::cell::Cell;
use std::io::ErrorKind;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use futures::io::{AsyncReadExt, AsyncWriteExt};
use infect::host::net::{self, TcpListener, TcpStream, UnixListener, UnixStream};
use infect::host::{self, Host};
use infect::time::VirtualClock;
use infect::{Cancelled, Error, guest, to_host};

static SERIAL: Mutex<()> = Mutex::new(());

/// Serialises the tests (they count descriptors) and survives a failed one.
fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn fd_is_open(fd: i32) -> bool {
    std::path::Path::new(&format!("/proc/self/fd/{fd}")).exists()
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A loopback address nobody listens on (bound, read, closed).
async fn dead_addr() -> SocketAddr {
    TcpListener::bind(loopback()).unwrap().local_addr().unwrap()
}

fn vhost() -> (Host, Rc<VirtualClock>) {
    let clock = Rc::new(VirtualClock::new());
    (Host::builder().clock(clock.clone()).build().unwrap(), clock)
}

/// A listener whose accept queue (backlog 0: one connection) is already full, and the
/// connection filling it: a further connect to it hangs (the kernel drops its SYNs).
async fn full_listener() -> (TcpListener, TcpStream) {
    let listener = TcpListener::bind_with_backlog(loopback(), 0).unwrap();
    let filler = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
    (listener, filler)
}

fn unix_path(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("infect-net-{}-{tag}.sock", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

// ---------------------------------------------------------------- TCP basics

#[test]
fn tcp_connect_accept_read_write_eof() {
    let _s = serial();
    let host = Host::new().unwrap();
    let got = host.block_on(async {
        let listener = TcpListener::bind(loopback())?;
        let addr = listener.local_addr()?;
        assert_eq!(addr.ip(), loopback().ip());
        let mut client = TcpStream::connect(addr).await?;
        let (mut server, peer) = listener.accept().await?;
        assert_eq!(peer, client.local_addr()?);
        assert_eq!(client.peer_addr()?, addr);
        assert_eq!(server.local_addr()?, addr);

        client.write_all(b"hello").await?;
        let mut buf = [0u8; 5];
        server.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"hello");

        // Half close: the server reads end-of-stream, and can still answer.
        client.shutdown(Shutdown::Write)?;
        assert_eq!(server.read(&mut buf).await?, 0);
        server.write_all(b"bye").await?;
        drop(server);
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await?;
        std::io::Result::Ok(rest)
    });
    assert_eq!(got.unwrap(), b"bye");
}

#[test]
fn tcp_refused_is_connection_refused() {
    let _s = serial();
    let before = open_fds();
    let err = Host::new().unwrap().block_on(async { TcpStream::connect(dead_addr().await).await.unwrap_err() });
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    assert!(net::cancelled(&err).is_none());
    let errno = err.raw_os_error();
    assert_eq!(errno, Some(libc::ECONNREFUSED));
    let Error::Io(io) = Error::from(err) else { panic!("not Error::Io") };
    assert_eq!((io.kind(), io.raw_os_error()), (ErrorKind::ConnectionRefused, errno));
    assert_eq!(open_fds(), before, "the refused socket is closed");
}

#[test]
fn tcp_reset_after_linger_zero() {
    let _s = serial();
    let err = Host::new().unwrap().block_on(async {
        let listener = TcpListener::bind(loopback()).unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        server.set_linger(Some(Duration::ZERO)).unwrap();
        drop(server); // abortive close: RST
        client.read(&mut [0u8; 8]).await.unwrap_err()
    });
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
}

#[test]
fn sockets_are_cloexec_and_nonblocking() {
    let _s = serial();
    Host::new().unwrap().block_on(async {
        let listener = TcpListener::bind(loopback()).unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (a, _b) = UnixStream::pair().unwrap();
        for fd in [listener.as_raw_fd(), client.as_raw_fd(), server.as_raw_fd(), a.as_raw_fd()] {
            // SAFETY: `fd` is open (owned by a live socket above); F_GETFD/F_GETFL take no pointer.
            let (fdflags, flflags) = unsafe { (libc::fcntl(fd, libc::F_GETFD), libc::fcntl(fd, libc::F_GETFL)) };
            assert_eq!(fdflags & libc::FD_CLOEXEC, libc::FD_CLOEXEC, "fd {fd} not CLOEXEC");
            assert_eq!(flflags & libc::O_NONBLOCK, libc::O_NONBLOCK, "fd {fd} blocking");
        }
    });
}

#[test]
fn sockets_need_a_host_loop() {
    let _s = serial();
    let err = TcpListener::bind(loopback()).unwrap_err();
    assert_eq!(Error::from(err), Error::NoHostLoop);
    let err = UnixStream::pair().unwrap_err();
    assert_eq!(Error::from(err).kind(), "NoHostLoop");
}

#[test]
fn resolve_blocking_numeric() {
    assert_eq!(net::resolve_blocking("127.0.0.1", 9).unwrap(), vec![SocketAddr::from(([127, 0, 0, 1], 9))]);
}

// ---------------------------------------------------------------- cancellation

/// A host task cancelled in the middle of a read gets its `Cancelled` (same reason); the bytes
/// that arrive later are all there for the next reader.
#[test]
fn cancel_mid_read_loses_nothing() {
    let _s = serial();
    let host = Host::new().unwrap();
    let (first, second) = host.block_on(async {
        let listener = TcpListener::bind(loopback()).unwrap();
        let client = Rc::new(TcpStream::connect(listener.local_addr().unwrap()).await.unwrap());
        let (server, _) = listener.accept().await.unwrap();
        let reader = client.clone();
        let polls = Rc::new(Cell::new(0));
        let seen = polls.clone();
        let task = host::spawn(async move {
            let mut buf = [0u8; 16];
            seen.set(seen.get() + 1);
            reader.read(&mut buf).await
        })
        .unwrap();
        host::sleep(Duration::from_millis(10)).await.unwrap();
        assert_eq!(polls.get(), 1, "the reader is waiting");
        task.cancel("stop reading");
        let first = task.await.expect("the task finished on its cooperative poll");
        server.write_all(b"all of it").await.unwrap();
        let mut buf = [0u8; 9];
        (&*client).read_exact(&mut buf).await.unwrap();
        (first, buf)
    });
    let err = first.unwrap_err();
    assert_eq!(net::cancelled(&err), Some(&Cancelled::new("stop reading")));
    assert_eq!(Error::from(err), Error::HostTaskCancelled(Cancelled::new("stop reading")));
    assert_eq!(&second, b"all of it");
}

/// Cancellation is checked first and sticky: a cancelled task's read fails even with data
/// waiting, and the data stays.
#[test]
fn cancelled_task_reads_nothing() {
    let _s = serial();
    let host = Host::new().unwrap();
    host.block_on(async {
        let (a, b) = UnixStream::pair().unwrap();
        a.write_all(b"kept").await.unwrap();
        let b = Rc::new(b);
        let inner = b.clone();
        let out = host::spawn(async move {
            host::cancel_current("self");
            let first = inner.read(&mut [0u8; 4]).await;
            let again = inner.write(b"x").await;
            (first.map_err(|e| net::cancelled(&e).cloned()), again.map_err(|e| net::cancelled(&e).cloned()))
        })
        .unwrap()
        .await
        .unwrap();
        assert_eq!(out, (Err(Some(Cancelled::new("self"))), Err(Some(Cancelled::new("self")))));
        let mut buf = [0u8; 4];
        (&*b).read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"kept");
    });
}

/// A task that owns a stream and is cancelled mid-read (and one cancelled mid-accept) closes
/// its descriptors.
#[test]
fn cancel_mid_read_and_accept_closes_the_fds() {
    let _s = serial();
    let host = Host::new().unwrap();
    let before = open_fds();
    host.block_on(async {
        let listener = TcpListener::bind(loopback()).unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let fd = client.as_raw_fd();
        let (_server, _) = listener.accept().await.unwrap();
        let reader = host::spawn(async move { client.read(&mut [0u8; 4]).await.map(drop) }).unwrap();
        let acceptor = host::spawn(async move { listener.accept().await.map(drop) }).unwrap();
        host::sleep(Duration::from_millis(5)).await.unwrap();
        assert!(fd_is_open(fd));
        reader.cancel("r");
        acceptor.cancel("a");
        let (r, a) = (reader.await.unwrap().unwrap_err(), acceptor.await.unwrap().unwrap_err());
        assert_eq!(net::cancelled(&r).map(|c| c.reason.as_str()), Some("r"));
        assert_eq!(net::cancelled(&a).map(|c| c.reason.as_str()), Some("a"));
        assert!(!fd_is_open(fd), "the cancelled reader's socket is closed");
    });
    assert_eq!(open_fds(), before);
}

/// A connect to a full accept queue hangs; cancelling its task returns `Cancelled` and closes
/// the half-open socket.
#[test]
fn cancel_mid_connect_closes_the_fd() {
    let _s = serial();
    let host = Host::new().unwrap();
    host.block_on(async {
        let (listener, _filler) = full_listener().await;
        let addr = listener.local_addr().unwrap();
        let before = open_fds();
        let connect = host::spawn(TcpStream::connect(addr)).unwrap();
        host::sleep(Duration::from_millis(50)).await.unwrap();
        assert_eq!(open_fds(), before + 1, "the connecting socket is open");
        assert!(!connect.is_finished(), "the connect hangs");
        connect.cancel("give up");
        let err = connect.await.unwrap().unwrap_err();
        assert_eq!(net::cancelled(&err), Some(&Cancelled::new("give up")));
        assert_eq!(open_fds(), before, "the half-open socket is closed");
    });
}

/// Dropping the connect's `JoinHandle` (the task is dropped, not polled again) closes it too.
#[test]
fn dropped_connect_task_closes_the_fd() {
    let _s = serial();
    let host = Host::new().unwrap();
    host.block_on(async {
        let (listener, _filler) = full_listener().await;
        let before = open_fds();
        let connect = host::spawn(TcpStream::connect(listener.local_addr().unwrap())).unwrap();
        host::sleep(Duration::from_millis(20)).await.unwrap();
        assert_eq!(open_fds(), before + 1);
        drop(connect);
        host::sleep(Duration::from_millis(1)).await.unwrap();
        assert_eq!(open_fds(), before);
    });
}

// ---------------------------------------------------------------- guest deadlines (virtual clock)

/// A guest `move_on_after(5s)` around `run_task(connect to a full accept queue)` fires at
/// exactly 5 s of virtual time, cancels the host task and closes its socket.
#[test]
fn guest_deadline_around_hung_connect_fires_on_time() {
    let _s = serial();
    let (host, clock) = vhost();
    let (listener, filler) = host.block_on(full_listener());
    let addr = listener.local_addr().unwrap();
    let before = open_fds();
    let start = host.now();
    let out = host.run_guest(async move {
        let r = guest::move_on_after(
            Duration::from_secs(5),
            to_host::run_task(async move {
                TcpStream::connect(addr).await?;
                Ok("connected")
            }),
        )
        .await?;
        Ok((r, guest::current_time()))
    });
    let (r, at) = out.unwrap();
    assert_eq!(r, None);
    assert_eq!(at - start, Duration::from_secs(5));
    assert_eq!(host.now() - start, Duration::from_secs(5));
    assert_eq!(open_fds(), before, "the connecting socket was closed");
    drop((listener, filler, clock));
}

/// `fail_after(3s)` around `run_task(read from a peer that never writes)`: `TooSlow` at 3 s.
#[test]
fn guest_deadline_around_hung_read_fires_on_time() {
    let _s = serial();
    let (host, _clock) = vhost();
    let (client, server) = host.block_on(async {
        let listener = TcpListener::bind(loopback()).unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        (client, listener.accept().await.unwrap().0)
    });
    let start = host.now();
    let out = host.run_guest(async move {
        let r = guest::fail_after(
            Duration::from_secs(3),
            to_host::run_task(async move {
                let mut buf = [0u8; 4];
                Ok(client.read(&mut buf).await?)
            }),
        )
        .await;
        Ok((r, guest::current_time()))
    });
    let (r, at) = out.unwrap();
    assert_eq!(r, Err(Error::TooSlow));
    assert_eq!(at - start, Duration::from_secs(3));
    drop(server);
}

/// A read the host task completes is not lost to the link: `run_task` returns the bytes.
#[test]
fn run_task_read_returns_the_bytes() {
    let _s = serial();
    let (host, _clock) = vhost();
    let (client, server) = host.block_on(async {
        let (a, b) = UnixStream::pair().unwrap();
        (a, b)
    });
    let out = host.run_guest(async move {
        to_host::run_task(async move {
            server.write_all(b"abc").await?;
            let mut buf = [0u8; 3];
            (&client).read_exact(&mut buf).await?;
            Ok(buf)
        })
        .await
    });
    assert_eq!(out.unwrap(), *b"abc");
}

// ---------------------------------------------------------------- many connections

#[test]
fn thousand_tcp_connections_fd_count_flat() {
    let _s = serial();
    let host = Host::new().unwrap();
    host.block_on(async {
        let listener = TcpListener::bind(loopback()).unwrap();
        let addr = listener.local_addr().unwrap();
        let before = open_fds();
        for i in 0..1000u32 {
            let client = TcpStream::connect(addr).await.unwrap();
            let (server, _) = listener.accept().await.unwrap();
            client.write_all(&i.to_le_bytes()).await.unwrap();
            let mut buf = [0u8; 4];
            (&server).read_exact(&mut buf).await.unwrap();
            assert_eq!(u32::from_le_bytes(buf), i);
            drop((client, server));
            if i % 100 == 0 {
                assert_eq!(open_fds(), before, "after connection {i}");
            }
        }
        assert_eq!(open_fds(), before);
    });
}

#[test]
fn thousand_unix_connections_fd_count_flat() {
    let _s = serial();
    let path = unix_path("thousand");
    let host = Host::new().unwrap();
    host.block_on(async {
        let listener = UnixListener::bind(&path).unwrap();
        let before = open_fds();
        for i in 0..1000u32 {
            let client = UnixStream::connect(&path).await.unwrap();
            let server = listener.accept().await.unwrap();
            server.write_all(&i.to_le_bytes()).await.unwrap();
            let mut buf = [0u8; 4];
            (&client).read_exact(&mut buf).await.unwrap();
            assert_eq!(u32::from_le_bytes(buf), i);
        }
        assert_eq!(open_fds(), before);
    });
    std::fs::remove_file(&path).unwrap();
}

// ---------------------------------------------------------------- Unix sockets

#[test]
fn unix_connect_accept_read_write_eof() {
    let _s = serial();
    let path = unix_path("basic");
    let host = Host::new().unwrap();
    let got = host.block_on(async {
        let listener = UnixListener::bind(&path)?;
        let mut client = UnixStream::connect(&path).await?;
        let mut server = listener.accept().await?;
        client.write_all(b"ping").await?;
        client.close().await?; // shutdown(Write)
        let mut got = Vec::new();
        server.read_to_end(&mut got).await?;
        server.write_all(b"pong").await?;
        drop(server);
        let mut back = Vec::new();
        client.read_to_end(&mut back).await?;
        std::io::Result::Ok((got, back))
    });
    std::fs::remove_file(&path).unwrap();
    assert_eq!(got.unwrap(), (b"ping".to_vec(), b"pong".to_vec()));
}

#[test]
fn unix_refused_and_missing() {
    let _s = serial();
    let path = unix_path("refused");
    let host = Host::new().unwrap();
    let before = open_fds();
    let (missing, refused) = host.block_on(async {
        let missing = UnixStream::connect(&path).await.unwrap_err().kind();
        drop(UnixListener::bind(&path).unwrap()); // the path stays, nobody listens
        let refused = UnixStream::connect(&path).await.unwrap_err().kind();
        (missing, refused)
    });
    std::fs::remove_file(&path).unwrap();
    assert_eq!((missing, refused), (ErrorKind::NotFound, ErrorKind::ConnectionRefused));
    assert_eq!(open_fds(), before);
}

#[test]
fn unix_cancel_mid_read_loses_nothing_and_closes() {
    let _s = serial();
    let host = Host::new().unwrap();
    let before = open_fds();
    host.block_on(async {
        let (a, b) = UnixStream::pair().unwrap();
        let b = Rc::new(b);
        let reader = b.clone();
        let task = host::spawn(async move { reader.read(&mut [0u8; 8]).await }).unwrap();
        host::sleep(Duration::from_millis(5)).await.unwrap();
        task.cancel("enough");
        let err = task.await.unwrap().unwrap_err();
        assert_eq!(net::cancelled(&err).map(|c| c.reason.as_str()), Some("enough"));
        a.write_all(b"late").await.unwrap();
        drop(a);
        let mut rest = String::new();
        (&*b).read_to_string(&mut rest).await.unwrap();
        assert_eq!(rest, "late");
    });
    assert_eq!(open_fds(), before);
}

// ---------------------------------------------------------------- the link's teardown through `?`

/// A guest block that fails while its host task waits in a socket read: the read returns the
/// teardown's `Cancelled` (cause: the guest's failure), the host task propagates it with `?`
/// (`From<io::Error> for Error`), and the block comes out with exactly the guest's error — no
/// error group, as with a cancelled `host::sleep`. The host task's socket is closed.
#[test]
fn guest_failure_tears_down_a_reading_host_task() {
    let _s = serial();
    let (host, _clock) = vhost();
    let (client, server) = host.block_on(async { UnixStream::pair().unwrap() });
    let fd = client.as_raw_fd();
    let seen = Rc::new(std::cell::RefCell::new(None));
    let seen_host = seen.clone();
    let out = host.run_guest(async move {
        let target = move |chan: to_host::HostChannel<(), (), ()>| async move {
            chan.started_nowait(())?;
            let r = client.read(&mut [0u8; 4]).await;
            *seen_host.borrow_mut() = r.as_ref().err().and_then(net::cancelled).map(|c| c.reason.clone());
            r?;
            Ok(())
        };
        to_host::open_channel_from(target, to_host::LinkOpts::new(), async |_chan, ()| {
            guest::sleep(Duration::from_millis(10)).await?;
            Err::<(), _>(common::boom("ValueError", "guest gave up"))
        })
        .await
    });
    assert_eq!(out, Err(common::boom("ValueError", "guest gave up")));
    assert!(seen.borrow().is_some(), "the host read was cancelled");
    assert!(!fd_is_open(fd), "the host task's socket is closed");
    drop(server);
}

// ---------------------------------------------------------------- the reactor's poll API

struct CountWaker(std::sync::atomic::AtomicUsize);

impl std::task::Wake for CountWaker {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn count_waker() -> (std::sync::Arc<CountWaker>, std::task::Waker) {
    let c = std::sync::Arc::new(CountWaker(0.into()));
    (c.clone(), c.into())
}

/// `AsyncFd::poll_read` keeps one registration per direction: a re-poll with another waker
/// replaces the waker (only the latest is woken), a read and a write wait side by side, and
/// after the data is read the slot registers anew.
#[test]
fn asyncfd_poll_slots_one_per_direction() {
    use infect::reactor::{Reactor, fd};
    use std::sync::atomic::Ordering::SeqCst;
    use std::task::{Context, Poll};
    let _s = serial();
    let reactor = Reactor::new().unwrap();
    let (rx, tx) = fd::pipe().unwrap();
    let (rx, tx) = (fd::AsyncFd::new(rx, &reactor).unwrap(), fd::AsyncFd::new(tx, &reactor).unwrap());
    let ((a, wa), (b, wb)) = (count_waker(), count_waker());
    let mut buf = [0u8; 8];
    assert!(rx.poll_read(&mut Context::from_waker(&wa), &mut buf).is_pending());
    assert!(rx.poll_read(&mut Context::from_waker(&wb), &mut buf).is_pending());
    assert!(matches!(tx.poll_write(&mut Context::from_waker(&wa), b"ab"), Poll::Ready(Ok(2))));
    assert_eq!(reactor.park(Some(Duration::from_secs(5))).unwrap().woken, 1, "one registration");
    assert_eq!((a.0.load(SeqCst), b.0.load(SeqCst)), (0, 1), "the latest waker is woken");
    assert!(matches!(rx.poll_read(&mut Context::from_waker(&wb), &mut buf), Poll::Ready(Ok(2))));
    assert!(!reactor.has_interests());
    assert!(rx.poll_read(&mut Context::from_waker(&wb), &mut buf).is_pending());
    assert!(reactor.has_interests(), "registered anew");
    drop(rx);
    assert!(!reactor.has_interests(), "dropping the AsyncFd removes its interest");
}
