//! [`Endpoints`]: the functions a binary lets its actors serve, by namespace and name (the
//! analogue of tractor's `enable_modules`).
//!
//! Invariants:
//! - The registry is built once, by the binary, before [`main`](super::main); it is the same in
//!   every actor of that binary. Which of its namespaces an actor may serve is decided per actor,
//!   by its parent (`ActorOpts::enable_modules`).
//! - Lookups go through `BTreeMap`s: nothing about the registry's iteration order can change
//!   behaviour.
//! - An endpoint decodes its arguments *before* it is started: a `Start` whose arguments do
//!   not decode is answered with an error and nothing runs.
//! - Each endpoint has a [`FuncKind`]: [`FuncKind::Function`] (a plain async function, one
//!   result) or [`FuncKind::Context`] (an async function of a [`Context`] handle, with
//!   `started(v)` and streams, then one result). A `Start` whose kind is not the endpoint's is
//!   refused (`WrongFunctionKind`) before anything runs.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Context;
use crate::wire::{FuncKind, decode_payload, encode_payload};
use crate::{Error, Result};

/// A started call: the future of an endpoint, already holding its decoded arguments, resolving
/// to the postcard bytes of its result.
pub(crate) type CallFuture = Pin<Box<dyn Future<Output = Result<Vec<u8>>>>>;

type FunctionFn = dyn Fn(&[u8]) -> Result<CallFuture>;
type ContextFn = dyn Fn(Context, &[u8]) -> Result<CallFuture>;

/// One registered endpoint.
#[derive(Clone)]
pub(crate) enum Endpoint {
    /// A plain async function: decode the arguments, run, encode the result.
    Function(Rc<FunctionFn>),
    /// A context function: decode the arguments, run with the callee's [`Context`], encode
    /// the result.
    Context(Rc<ContextFn>),
}

impl Endpoint {
    pub(crate) fn kind(&self) -> FuncKind {
        match self {
            Endpoint::Function(_) => FuncKind::Function,
            Endpoint::Context(_) => FuncKind::Context,
        }
    }
}

/// The registry of endpoints a binary serves, by namespace and function name.
///
/// ```
/// use infect::actor::Endpoints;
///
/// async fn add((a, b): (u32, u32)) -> infect::Result<u32> {
///     Ok(a + b)
/// }
///
/// let endpoints = Endpoints::new().function("math", "add", add);
/// assert!(endpoints.contains("math", "add"));
/// assert!(!endpoints.contains("math", "sub"));
/// ```
#[derive(Clone, Default)]
pub struct Endpoints {
    map: BTreeMap<String, BTreeMap<String, Endpoint>>,
}

impl fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_map();
        for (ns, funcs) in &self.map {
            out.entry(ns, &funcs.keys().collect::<Vec<_>>());
        }
        out.finish()
    }
}

impl Endpoints {
    /// An empty registry.
    pub fn new() -> Endpoints {
        Endpoints::default()
    }

    /// Registers `f` as function `name` of namespace `ns`: an async function of one serde
    /// argument (use a tuple for several) returning a serde value. Registering the same name
    /// twice keeps the last one.
    pub fn function<A, R, F, Fut>(mut self, ns: &str, name: &str, f: F) -> Endpoints
    where
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
        F: Fn(A) -> Fut + 'static,
        Fut: Future<Output = Result<R>> + 'static,
    {
        let f = Rc::new(f);
        let erased = move |args: &[u8]| -> Result<CallFuture> {
            let args: A = decode_payload(args)?;
            let fut = f(args);
            Ok(Box::pin(async move {
                let value = fut.await?;
                Ok(encode_payload(&value)?)
            }) as CallFuture)
        };
        self.map.entry(ns.to_owned()).or_default().insert(name.to_owned(), Endpoint::Function(Rc::new(erased)));
        self
    }

    /// Registers `f` as context function `name` of namespace `ns` (tractor's `@tractor.context`):
    /// an async function of the callee's [`Context`] and one serde argument, returning a serde
    /// value. It is opened with [`Portal::open_context`](super::Portal::open_context); it must
    /// call [`Context::started`] once before it streams or returns. Registering the same name
    /// twice keeps the last one.
    ///
    /// ```
    /// use infect::actor::{Context, Endpoints};
    ///
    /// async fn ticker(ctx: Context, n: u32) -> infect::Result<()> {
    ///     ctx.started(&n).await?;
    ///     ctx.open_stream(async |stream| {
    ///         for i in 0..n {
    ///             stream.send(&i).await?;
    ///         }
    ///         Ok(())
    ///     })
    ///     .await
    /// }
    ///
    /// let endpoints = Endpoints::new().context("clock", "ticker", ticker);
    /// assert!(endpoints.contains("clock", "ticker"));
    /// ```
    pub fn context<A, R, F, Fut>(mut self, ns: &str, name: &str, f: F) -> Endpoints
    where
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
        F: Fn(Context, A) -> Fut + 'static,
        Fut: Future<Output = Result<R>> + 'static,
    {
        let f = Rc::new(f);
        let erased = move |ctx: Context, args: &[u8]| -> Result<CallFuture> {
            let args: A = decode_payload(args)?;
            let fut = f(ctx, args);
            Ok(Box::pin(async move {
                let value = fut.await?;
                Ok(encode_payload(&value)?)
            }) as CallFuture)
        };
        self.map.entry(ns.to_owned()).or_default().insert(name.to_owned(), Endpoint::Context(Rc::new(erased)));
        self
    }

    /// Whether function `name` of namespace `ns` is registered.
    pub fn contains(&self, ns: &str, name: &str) -> bool {
        self.get(ns, name).is_some()
    }

    pub(crate) fn get(&self, ns: &str, name: &str) -> Option<&Endpoint> {
        self.map.get(ns)?.get(name)
    }

    /// Looks up an endpoint for actor `actor`, which serves the namespaces in `enabled`.
    pub(crate) fn lookup(&self, enabled: &[String], actor: &str, ns: &str, func: &str) -> Result<&Endpoint> {
        if !enabled.iter().any(|e| e == ns) {
            return Err(Error::ModuleNotExposed { ns: ns.to_owned(), actor: actor.to_owned() });
        }
        self.get(ns, func).ok_or_else(|| Error::UnknownFunction {
            ns: ns.to_owned(),
            func: func.to_owned(),
            actor: actor.to_owned(),
        })
    }
}
