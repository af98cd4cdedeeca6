//! [`Endpoints`]: the functions a binary lets its actors serve, by namespace and name (the
//! analogue of tractor's `enable_modules`), and the typed handles ([`Function`], [`ContextFn`])
//! that name them at both ends.
//!
//! Invariants:
//! - Both ends of a call are the same binary, so a handle declared once types both: the
//!   handler registered for it ([`Endpoints::serve`]) and every call through it
//!   ([`Portal::run`](super::Portal::run), [`Portal::open_context`](super::Portal::open_context),
//!   [`ActorNursery::run_in_actor`](super::ActorNursery::run_in_actor)) are checked by the
//!   compiler. What crosses the pipe is still `(ns, name)` and postcard bytes: a handle whose
//!   types disagree with what the serving binary registered (another program, or a handle made
//!   for the mistake) fails at run time, when its arguments or result do not decode.
//! - The registry is built once, by the binary, before [`main`](super::main); it is the same in
//!   every actor of that binary. Which of its namespaces an actor may serve is decided per actor,
//!   by its parent (`ActorOpts::enable_modules`).
//! - Lookups go through sorted maps (`VecMap`s): nothing about the registry's iteration order can change
//!   behaviour.
//! - An endpoint decodes its arguments *before* it is started: a `Start` whose arguments do
//!   not decode is answered with an error and nothing runs.
//! - Each endpoint has a [`FuncKind`]: [`FuncKind::Function`] (a plain async function, one
//!   result) or [`FuncKind::Context`] (an async function of a [`Context`] handle, with
//!   `started(v)` and streams, then one result). A `Start` whose kind is not the endpoint's is
//!   refused (`WrongFunctionKind`) before anything runs.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::rc::Rc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Context;
use crate::sync::VecMap;
use crate::wire::{FuncKind, decode_payload, encode_payload};
use crate::{Error, Result};

/// A started call: the future of an endpoint, already holding its decoded arguments, resolving
/// to the postcard bytes of its result.
pub(crate) type CallFuture = Pin<Box<dyn Future<Output = Result<Vec<u8>>>>>;

type FunctionFn = dyn Fn(&[u8]) -> Result<CallFuture>;
type ContextFnDyn = dyn Fn(Context, &[u8]) -> Result<CallFuture>;

/// One registered endpoint, type-erased (an implementation detail of [`ServedBy`]).
#[derive(Clone)]
#[doc(hidden)]
pub enum Endpoint {
    /// A plain async function: decode the arguments, run, encode the result.
    Function(Rc<FunctionFn>),
    /// A context function: decode the arguments, run with the callee's [`Context`], encode
    /// the result.
    Context(Rc<ContextFnDyn>),
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Endpoint::Function(_) => "Endpoint::Function",
            Endpoint::Context(_) => "Endpoint::Context",
        })
    }
}

impl Endpoint {
    pub(crate) fn kind(&self) -> FuncKind {
        match self {
            Endpoint::Function(_) => FuncKind::Function,
            Endpoint::Context(_) => FuncKind::Context,
        }
    }
}

/// A typed handle on a plain endpoint: an async function of one serde argument `A` (a tuple
/// for several, `()` for none) returning a serde value `R`, named `ns.name`.
///
/// Declare it once, as a `const`, and use it at both ends: [`Endpoints::serve`] checks the
/// handler's types against it, and [`Portal::run`](super::Portal::run) /
/// [`ActorNursery::run_in_actor`](super::ActorNursery::run_in_actor) take the arguments and
/// give the result it names. (Both ends are the same binary; a handle made at run time, say
/// with a name read from input, works the same way and fails at run time with the remote
/// `UnknownFunction` if nothing serves it.)
///
/// ```
/// use infect::actor::{Endpoints, Function};
///
/// const ADD: Function<(u32, u32), u32> = Function::new("math", "add");
/// const ZERO: Function<(), u32> = Function::new("math", "zero");
///
/// async fn add((a, b): (u32, u32)) -> infect::Result<u32> {
///     Ok(a + b)
/// }
///
/// async fn zero() -> infect::Result<u32> {
///     Ok(0)
/// }
///
/// let endpoints = Endpoints::new().serve(ADD, add).serve(ZERO, zero);
/// assert!(endpoints.contains(ADD.ns(), ADD.name()));
/// assert_eq!(ZERO.name(), "zero");
/// ```
///
/// A call with arguments of another type does not compile:
///
/// ```compile_fail
/// # use infect::actor::{Function, Portal};
/// const ADD: Function<(u32, u32), u32> = Function::new("math", "add");
///
/// async fn call(portal: &Portal) -> infect::Result<String> {
///     portal.run(ADD, &("1", "2")).await // refused: ADD takes (u32, u32) and gives a u32
/// }
/// ```
pub struct Function<A, R> {
    ns: &'static str,
    name: &'static str,
    types: PhantomData<fn(A) -> R>,
}

/// A typed handle on a context endpoint (tractor's `@tractor.context`): an async function of
/// the callee's [`Context`] and one serde argument `A` (`()` for none), which calls
/// [`Context::started`] with an `S` once and returns an `R` (default `()`), named `ns.name`.
///
/// Declared once and used at both ends like [`Function`]: [`Endpoints::serve`] checks the
/// handler, [`Portal::open_context`](super::Portal::open_context) takes the `A` and hands its
/// block the `S`.
///
/// ```
/// use infect::actor::{Context, ContextFn, Endpoints};
///
/// /// Streams `0..n`; started with `n`; returns how many it sent.
/// const TICKER: ContextFn<u32, u32, u32> = ContextFn::new("clock", "ticker");
///
/// async fn ticker(ctx: Context, n: u32) -> infect::Result<u32> {
///     ctx.started(&n).await?;
///     ctx.open_stream(async |stream| {
///         for i in 0..n {
///             stream.send(&i).await?;
///         }
///         Ok(n)
///     })
///     .await
/// }
///
/// let endpoints = Endpoints::new().serve(TICKER, ticker);
/// assert!(endpoints.contains("clock", "ticker"));
/// ```
pub struct ContextFn<A, S, R = ()> {
    ns: &'static str,
    name: &'static str,
    types: PhantomData<fn(A) -> (S, R)>,
}

macro_rules! handle_common {
    ($ty:ident < $($p:ident),* >, $what:literal) => {
        impl<$($p),*> $ty<$($p),*> {
            #[doc = concat!("A handle on ", $what, " `name` of namespace `ns`.")]
            pub const fn new(ns: &'static str, name: &'static str) -> Self {
                $ty { ns, name, types: PhantomData }
            }

            /// The namespace (what [`ActorOpts::enable_modules`](super::ActorOpts::enable_modules)
            /// enables).
            pub const fn ns(&self) -> &'static str {
                self.ns
            }

            /// The endpoint's name within its namespace.
            pub const fn name(&self) -> &'static str {
                self.name
            }
        }

        impl<$($p),*> Clone for $ty<$($p),*> {
            fn clone(&self) -> Self {
                *self
            }
        }

        impl<$($p),*> Copy for $ty<$($p),*> {}

        impl<$($p),*> fmt::Debug for $ty<$($p),*> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({}.{})", stringify!($ty), self.ns, self.name)
            }
        }
    };
}

handle_common!(Function<A, R>, "plain function");
handle_common!(ContextFn<A, S, R>, "context function");

/// A handler that can serve a [`Function<A, R>`]: an `async fn() -> Result<R>` (for
/// `A = ()`) or an `async fn(A) -> Result<R>`. `M` only tells the two shapes apart; it is
/// inferred. Closures work too.
///
/// ```
/// use infect::actor::{Endpoints, Function};
///
/// const PING: Function<(), String> = Function::new("net", "ping");
/// const SQUARE: Function<u64, u64> = Function::new("math", "square");
///
/// async fn ping() -> infect::Result<String> {
///     Ok("pong".into())
/// }
///
/// let endpoints = Endpoints::new().serve(PING, ping).serve(SQUARE, async |x: u64| Ok(x * x));
/// assert!(endpoints.contains("net", "ping") && endpoints.contains("math", "square"));
/// ```
pub trait FunctionHandler<A, R, M>: 'static {
    /// The handler's future.
    type Future: Future<Output = Result<R>> + 'static;
    /// Starts the handler on its decoded arguments.
    fn call(&self, args: A) -> Self::Future;
}

impl<R, F, Fut> FunctionHandler<(), R, ()> for F
where
    F: Fn() -> Fut + 'static,
    Fut: Future<Output = Result<R>> + 'static,
{
    type Future = Fut;
    fn call(&self, (): ()) -> Fut {
        self()
    }
}

impl<A, R, F, Fut> FunctionHandler<A, R, (A,)> for F
where
    F: Fn(A) -> Fut + 'static,
    Fut: Future<Output = Result<R>> + 'static,
{
    type Future = Fut;
    fn call(&self, args: A) -> Fut {
        self(args)
    }
}

/// A handler that can serve a [`ContextFn<A, S, R>`]: an `async fn(Context) -> Result<R>` (for
/// `A = ()`) or an `async fn(Context, A) -> Result<R>`. `M` only tells the two shapes apart.
///
/// ```
/// use infect::actor::{Context, ContextFn, Endpoints};
///
/// const HELLO: ContextFn<(), String> = ContextFn::new("greet", "hello");
///
/// async fn hello(ctx: Context) -> infect::Result<()> {
///     ctx.started(&"hello").await
/// }
///
/// assert!(Endpoints::new().serve(HELLO, hello).contains("greet", "hello"));
/// ```
pub trait ContextHandler<A, R, M>: 'static {
    /// The handler's future.
    type Future: Future<Output = Result<R>> + 'static;
    /// Starts the handler with the callee's context and its decoded arguments.
    fn call(&self, ctx: Context, args: A) -> Self::Future;
}

impl<R, F, Fut> ContextHandler<(), R, ()> for F
where
    F: Fn(Context) -> Fut + 'static,
    Fut: Future<Output = Result<R>> + 'static,
{
    type Future = Fut;
    fn call(&self, ctx: Context, (): ()) -> Fut {
        self(ctx)
    }
}

impl<A, R, F, Fut> ContextHandler<A, R, (A,)> for F
where
    F: Fn(Context, A) -> Fut + 'static,
    Fut: Future<Output = Result<R>> + 'static,
{
    type Future = Fut;
    fn call(&self, ctx: Context, args: A) -> Fut {
        self(ctx, args)
    }
}

/// A typed handle that handler `H` can serve ([`Function`] with a [`FunctionHandler`],
/// [`ContextFn`] with a [`ContextHandler`]); what [`Endpoints::serve`] takes. Only the
/// crate's handles implement it (its methods name a crate-private type).
///
/// ```
/// use infect::actor::{Function, ServedBy};
///
/// fn path_of<E: ServedBy<H, M>, H, M>(endpoint: E, _handler: H) -> (&'static str, &'static str) {
///     endpoint.path()
/// }
///
/// const DOUBLE: Function<u64, u64> = Function::new("math", "double");
/// assert_eq!(path_of(DOUBLE, async |x: u64| Ok(2 * x)), ("math", "double"));
/// ```
pub trait ServedBy<H, M>: Copy {
    /// The namespace and the name.
    fn path(&self) -> (&'static str, &'static str);
    /// The type-erased endpoint serving it with `handler`.
    #[doc(hidden)]
    fn erase(handler: H) -> Endpoint;
}

impl<A, R, H, M> ServedBy<H, M> for Function<A, R>
where
    A: DeserializeOwned + 'static,
    R: Serialize + 'static,
    H: FunctionHandler<A, R, M>,
{
    fn path(&self) -> (&'static str, &'static str) {
        (self.ns, self.name)
    }

    fn erase(handler: H) -> Endpoint {
        Endpoint::Function(Rc::new(move |args: &[u8]| -> Result<CallFuture> {
            let args: A = decode_payload(args)?;
            let fut = handler.call(args);
            Ok(Box::pin(async move { Ok(encode_payload(&fut.await?)?) }) as CallFuture)
        }))
    }
}

impl<A, S, R, H, M> ServedBy<H, M> for ContextFn<A, S, R>
where
    A: DeserializeOwned + 'static,
    R: Serialize + 'static,
    H: ContextHandler<A, R, M>,
{
    fn path(&self) -> (&'static str, &'static str) {
        (self.ns, self.name)
    }

    fn erase(handler: H) -> Endpoint {
        Endpoint::Context(Rc::new(move |ctx: Context, args: &[u8]| -> Result<CallFuture> {
            let args: A = decode_payload(args)?;
            let fut = handler.call(ctx, args);
            Ok(Box::pin(async move { Ok(encode_payload(&fut.await?)?) }) as CallFuture)
        }))
    }
}

/// The registry of endpoints a binary serves, by namespace and function name: typed handles
/// ([`Function`], [`ContextFn`]) with their handlers.
///
/// ```
/// use infect::actor::{Endpoints, Function};
///
/// const ADD: Function<(u32, u32), u32> = Function::new("math", "add");
///
/// async fn add((a, b): (u32, u32)) -> infect::Result<u32> {
///     Ok(a + b)
/// }
///
/// let endpoints = Endpoints::new().serve(ADD, add);
/// assert!(endpoints.contains("math", "add"));
/// assert!(!endpoints.contains("math", "sub"));
/// ```
#[derive(Clone, Default)]
pub struct Endpoints {
    map: VecMap<String, VecMap<String, Endpoint>>,
}

impl fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_map();
        for (ns, funcs) in self.map.iter() {
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

    /// Serves `endpoint` with `handler`. The compiler checks the handler against the handle:
    /// for a [`Function<A, R>`], an `async fn(A) -> Result<R>` (or `async fn() -> Result<R>`
    /// when `A = ()`); for a [`ContextFn<A, S, R>`], an `async fn(Context, A) -> Result<R>`
    /// (or `async fn(Context) -> Result<R>`), which must call [`Context::started`] once before
    /// it streams or returns. Serving the same name twice keeps the last one.
    ///
    /// ```compile_fail
    /// use infect::actor::{Endpoints, Function};
    ///
    /// const ADD: Function<(u32, u32), u32> = Function::new("math", "add");
    ///
    /// async fn add_strings((a, b): (String, String)) -> infect::Result<String> {
    ///     Ok(a + &b)
    /// }
    ///
    /// let endpoints = Endpoints::new().serve(ADD, add_strings); // wrong types: refused
    /// ```
    pub fn serve<E: ServedBy<H, M>, H, M>(mut self, endpoint: E, handler: H) -> Endpoints {
        let (ns, name) = endpoint.path();
        self.map.get_or_insert_with(ns.to_owned(), VecMap::default).insert(name.to_owned(), E::erase(handler));
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
