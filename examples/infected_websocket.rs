//! The seed's reason to exist: a library that only speaks the host's loop (here a real
//! websocket client stack, `async-tungstenite`, generic over futures-io) quarantined in an
//! infected subactor and driven from structured guest tasks.
//!
//! Three actors. The root starts `ws_server`, an infected actor whose host tasks run a
//! websocket echo server on `127.0.0.1` (an ephemeral port, relayed up through `ctx.started`),
//! and `ws_client`, an infected actor whose host task connects with
//! [`TcpStream`](infect::host::net::TcpStream) and runs the websocket client over it. The
//! client's context endpoint (the guest side of its linked pair) drives that host task through
//! `to_host::open_channel_from`, and relays each reply to the root through a context stream:
//!
//! ```text
//! root stream.send → pipe → ws_client guest → chan.send → host task → ws.send → TCP → ws_server
//! root ← pipe ← stream.send ← chan.receive ← send_nowait ← ws.next() ← TCP ← echo
//! ```
//!
//! Each guest wait for a reply sits inside `fail_after(read_timeout)`: a server that never
//! answers cancels the block at the deadline, which tears the host task (and its pending read)
//! down; the root sees `TooSlow`.
//!
//! Run it with:
//!
//! ```text
//! cargo run --release --example infected_websocket [echo|close|refuse|hang] [rounds]
//! ```
//!
//! `echo` (the default) prints the first exchanges and `mean round trip rate (Hz): N`. The
//! other scenarios make the server misbehave and print what the root saw: `close` (the server
//! closes the connection after three echoes: `HostTaskExited`), `refuse` (the server answers
//! the handshake with `403 Forbidden`: `HandshakeRefused`), `hang` (the server reads nothing and
//! never answers: `TooSlow` after the 200 ms deadline). Every scenario exits 0.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use async_tungstenite::tungstenite::{self, Message, http};
use futures::StreamExt;
use infect::actor::{self, ActorOpts, Context, ContextFn, Endpoints};
use infect::guest;
use infect::host::{self, net::TcpListener, net::TcpStream};
use infect::to_host::{self, HostChannel, LinkOpts};
use infect::{Error, Result};

/// The endpoint namespace this binary serves (Python's `enable_modules=[__name__]`).
const NS: &str = "infected_websocket";

/// The server's context endpoint: takes the mode, starts with its port.
pub const WS_SERVER: ContextFn<String, u16> = ContextFn::new(NS, "ws_server");
/// The client's context endpoint: takes the server's port, starts with a "connected" line.
pub const WS_CLIENT: ContextFn<u16, String> = ContextFn::new(NS, "ws_client");

/// How long the client's guest side waits for each reply.
const READ_TIMEOUT: Duration = Duration::from_millis(200);

/// A websocket failure as the crate's error: a refused handshake gets its own kind, and an I/O
/// error goes through `From<io::Error>`, so that a read the host task's cancellation ended comes
/// out as that cancellation (the link's teardown), not as a websocket failure.
fn ws_err(e: tungstenite::Error) -> Error {
    match e {
        tungstenite::Error::Io(e) => Error::from(e),
        tungstenite::Error::Http(_) => Error::user_kind("HandshakeRefused", e),
        e => Error::user_kind("WebSocket", e),
    }
}

// ---- the server actor: websocket echo on host tasks --------------------------------------

/// The handshake callback of the `refuse` mode: answers `403 Forbidden` instead of `101`. (Its
/// signature is tungstenite's `Callback`; the large error is the HTTP response to send.)
#[allow(clippy::result_large_err)]
fn refuse(_: &Request, _: Response) -> std::result::Result<Response, ErrorResponse> {
    let mut no = ErrorResponse::new(Some("no websockets here".into()));
    *no.status_mut() = http::StatusCode::FORBIDDEN;
    Err(no)
}

/// Serves one connection the way `mode` says.
async fn serve_conn(stream: TcpStream, mode: String) -> Result<()> {
    stream.set_nodelay(true)?;
    if mode == "refuse" {
        // The handshake fails on our side too, by design.
        let _ = async_tungstenite::accept_hdr_async(stream, refuse).await;
        return Ok(());
    }
    let mut ws = async_tungstenite::accept_async(stream).await.map_err(ws_err)?;
    if mode == "hang" {
        // Holds the connection open and reads nothing, until this task is torn down.
        host::sleep(Duration::from_secs(3600)).await?;
    }
    let mut echoed = 0;
    while let Some(msg) = ws.next().await {
        match msg.map_err(ws_err)? {
            msg @ (Message::Text(_) | Message::Binary(_)) => ws.send(msg).await.map_err(ws_err)?,
            Message::Close(_) => break,
            _ => continue,
        }
        echoed += 1;
        if mode == "close" && echoed == 3 {
            ws.close(None).await.map_err(ws_err)?;
            break;
        }
    }
    Ok(())
}

async fn host_ws_server(chan: HostChannel<(), (), u16>, mode: String) -> Result<()> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    chan.started_nowait(listener.local_addr()?.port())?;
    // The connection tasks live as long as this task: dropping a handle cancels its task.
    let mut conns = Vec::new();
    loop {
        let (stream, _peer) = listener.accept().await?;
        conns.push(host::spawn(serve_conn(stream, mode.clone())).ok_or(Error::NoHostLoop)?);
    }
}

/// The server's context endpoint: relays the port up, serves until cancelled.
pub async fn ws_server(ctx: Context, mode: String) -> Result<()> {
    to_host::open_channel_from(
        |chan| host_ws_server(chan, mode),
        LinkOpts::new(),
        async |chan, port| {
            ctx.started(&port).await?;
            // Serve until the root cancels us.
            chan.wait_for_result().await
        },
    )
    .await
}

// ---- the client actor: the websocket client on a host task, driven from the guest ----------

async fn host_ws_client(chan: HostChannel<String, String, String>, port: u16) -> Result<()> {
    let stream = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    stream.set_nodelay(true)?;
    let url = format!("ws://127.0.0.1:{port}/");
    let (mut ws, response) = async_tungstenite::client_async(url.as_str(), stream).await.map_err(ws_err)?;
    chan.started_nowait(format!("connected to {url} ({})", response.status()))?;
    loop {
        let out = chan.get().await?;
        ws.send(Message::text(out)).await.map_err(ws_err)?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(reply))) => break chan.send_nowait(reply.to_string())?,
                Some(Ok(Message::Close(_))) | None => return Ok(()), // the server closed
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(ws_err(e)),
            }
        }
    }
}

/// The client's context endpoint: drives the host task's websocket from the root's stream.
pub async fn ws_client(ctx: Context, port: u16) -> Result<()> {
    to_host::open_channel_from(
        |chan| host_ws_client(chan, port),
        LinkOpts::new(),
        async |chan, first| {
            ctx.started(&first).await?;
            ctx.open_stream(async |stream| {
                while let Some(msg) = stream.try_next().await? {
                    chan.send(msg).await?;
                    let reply = guest::fail_after(READ_TIMEOUT, chan.receive()).await?;
                    stream.send(&reply).await?;
                }
                Ok(())
            })
            .await
        },
    )
    .await
}

// ---- the root ------------------------------------------------------------------------------

/// What one run of a scenario saw (the process test `tests/net_actors.rs` checks it exactly).
#[derive(Debug, Default)]
pub struct Outcome {
    /// The client's `started` value.
    pub connected: Option<String>,
    /// Each message the root sent and the reply it got, in order.
    pub exchanged: Vec<(String, String)>,
    /// Each round trip's time, root to client to server and back.
    pub delays: Vec<Duration>,
    /// The error kind and message the root's client context ended with, if any.
    pub failure: Option<(String, String)>,
    /// From the server's `started` to the end of the client context.
    pub elapsed: Duration,
}

/// Streams `rounds` messages through the client, recording each exchange into `out`.
async fn exchange(p: &actor::Portal, port: u16, rounds: u64, out: &mut Outcome) -> Result<()> {
    p.open_context(WS_CLIENT, &port, async |ctx, first| {
        out.connected = Some(first);
        ctx.open_stream(async |stream| {
            for i in 0..rounds {
                let msg = format!("hello {i}");
                let send = Instant::now();
                stream.send(&msg).await?;
                let reply = stream.receive().await?;
                out.delays.push(send.elapsed());
                out.exchanged.push((msg, reply));
            }
            Ok(())
        })
        .await
    })
    .await
}

/// Runs one scenario: starts both actors, exchanges `rounds` messages, stops both.
pub async fn scenario(mode: &str, rounds: u64) -> Result<Outcome> {
    actor::open_nursery(async |n| {
        let opts = || ActorOpts::new().enable_modules([NS]).infect_host(true);
        let server = n.start_actor("ws_server", opts()).await?;
        let client = n.start_actor("ws_client", opts()).await?;
        let mut out = Outcome::default();
        server
            .open_context(WS_SERVER, &mode.to_owned(), async |ctx, port| {
                let start = Instant::now();
                if let Err(e) = exchange(&client, port, rounds, &mut out).await {
                    out.failure = Some(match e.remote() {
                        Some(r) => (r.boxed_type.clone(), r.message.clone()),
                        None => (e.kind().to_owned(), e.to_string()),
                    });
                }
                out.elapsed = start.elapsed();
                // Stop serving: the server's block is cancelled, its host tasks torn down (this
                // side absorbs the `ContextCancelled` it asked for).
                ctx.cancel().await
            })
            .await?;
        client.cancel_actor().await?;
        server.cancel_actor().await?;
        Ok(out)
    })
    .await
    // `None` only if the nursery's own cancel cut the block short, which this root never asks for.
    .and_then(|out| out.ok_or(Error::Cancelled))
}

async fn root(mode: String, rounds: u64) -> Result<()> {
    let out = scenario(&mode, rounds).await?;
    println!("server: websocket echo on 127.0.0.1 (mode {mode})");
    if let Some(connected) = &out.connected {
        println!("client: {connected}");
    }
    for (sent, got) in out.exchanged.iter().take(3) {
        println!("sent {sent:?}, got {got:?}");
    }
    println!("{} messages echoed", out.exchanged.len());
    match &out.failure {
        None => {
            println!("mean round trip rate (Hz): {}", Duration::from_secs(1).as_nanos() / mean(&out.delays).as_nanos())
        }
        // Rounded down to 100 ms, so that the line is the same on every run.
        Some((kind, what)) => println!("the root saw {kind} ({what}) after {} ms", out.elapsed.as_millis() / 100 * 100),
    }
    Ok(())
}

/// The mean of `delays` (a nanosecond if there are none).
pub fn mean(delays: &[Duration]) -> Duration {
    (delays.iter().sum::<Duration>() / delays.len().max(1) as u32).max(Duration::from_nanos(1))
}

/// The endpoints this binary serves.
pub fn endpoints() -> Endpoints {
    Endpoints::new().serve(WS_SERVER, ws_server).serve(WS_CLIENT, ws_client)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "echo".into());
    let default_rounds = if mode == "echo" { 1000 } else { 5 };
    let rounds = args.next().and_then(|r| r.parse().ok()).unwrap_or(default_rounds);
    actor::main(endpoints(), root(mode, rounds))
}
