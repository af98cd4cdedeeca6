//! Process tests of the websocket example's scenarios (`harness = false`: this binary *is* the
//! actor binary, serving the example's endpoints, which it includes).
//!
//! Each case runs `examples/infected_websocket.rs`'s `scenario` (a websocket echo server actor
//! and an infected client actor, both on `host::net` sockets), asserts its exact outcome, and
//! then that nothing was left behind (no child process, the same open descriptors).
//!
//! Run: `cargo test --test net_actors`.

#[macro_use]
mod common_proc;

#[allow(dead_code)]
#[path = "../examples/infected_websocket.rs"]
mod ws;

use std::time::Duration;

use infect::Result;
use infect::actor;

use common_proc::Check;

fn dbg<T: std::fmt::Debug>(e: T) -> String {
    format!("{e:?}")
}

fn hellos(n: u64) -> Vec<(String, String)> {
    (0..n).map(|i| (format!("hello {i}"), format!("hello {i}"))).collect()
}

/// 50 messages out and back, in order, over a completed `101` handshake.
async fn websocket_echo() -> Check {
    let out = ws::scenario("echo", 50).await.map_err(dbg)?;
    ensure!(out.failure.is_none(), "failed: {:?}", out.failure);
    let connected = out.connected.unwrap_or_default();
    ensure!(connected.ends_with("(101 Switching Protocols)"), "connected: {connected:?}");
    ensure!(out.exchanged == hellos(50), "exchanged {:?}", out.exchanged);
    ensure!(out.delays.len() == 50, "{} delays", out.delays.len());
    Ok(())
}

/// The server closes after three echoes: the client's host task returns, the guest sees the end
/// of the channel, and the root's context fails with `HostTaskExited`; nothing after it.
async fn websocket_server_closes() -> Check {
    let out = ws::scenario("close", 5).await.map_err(dbg)?;
    ensure!(out.exchanged == hellos(3), "exchanged {:?}", out.exchanged);
    let (kind, _) = out.failure.ok_or("no failure")?;
    ensure!(kind == "HostTaskExited", "kind {kind}");
    Ok(())
}

/// The server answers the handshake `403`: the host task fails before `started_nowait`, so the
/// client's `open_channel_from` (and the root's `open_context`) fails with it.
async fn websocket_refused_handshake() -> Check {
    let out = ws::scenario("refuse", 5).await.map_err(dbg)?;
    ensure!(out.connected.is_none() && out.exchanged.is_empty(), "{:?} {:?}", out.connected, out.exchanged);
    let failure = out.failure.ok_or("no failure")?;
    ensure!(failure == ("HandshakeRefused".into(), "HTTP error: 403 Forbidden".into()), "{failure:?}");
    Ok(())
}

/// The server never answers: the guest's 200 ms `fail_after` around the reply cancels the block,
/// which tears the host task down in the middle of its websocket read; the root sees `TooSlow`
/// (not an error group: the cancelled read comes out as the link's cancellation), on time.
async fn websocket_deadline_cancels_hung_read() -> Check {
    let out = ws::scenario("hang", 5).await.map_err(dbg)?;
    ensure!(out.exchanged.is_empty(), "exchanged {:?}", out.exchanged);
    let failure = out.failure.ok_or("no failure")?;
    ensure!(failure == ("TooSlow".into(), "deadline exceeded (fail_after)".into()), "{failure:?}");
    ensure!(
        out.elapsed >= Duration::from_millis(200) && out.elapsed < Duration::from_millis(1500),
        "took {:?}",
        out.elapsed
    );
    Ok(())
}

async fn run_all() -> Result<(usize, usize)> {
    let all: Vec<common_proc::Case> = cases![
        websocket_echo,
        websocket_server_closes,
        websocket_refused_handshake,
        websocket_deadline_cancels_hung_read,
    ];
    Ok(common_proc::run_cases(all, Duration::from_secs(20)).await)
}

fn main() {
    common_proc::report(actor::run(ws::endpoints(), run_all()));
}
