//! `allowed_outbound_hosts`: the `wasi:http` requests a guest may send.
//!
//! Every module is linked with `wasi:http/outgoing-handler`; what a request
//! reaches is decided here, by [`Outbound`], the hooks of every store:
//!
//! 1. The request's scheme, host and port must match an entry of the
//!    queue's allowlist; otherwise the guest gets `HTTP-request-denied`.
//!    Without the grant the list is empty and every request is denied.
//! 2. The host is resolved here, and each address is checked before it is
//!    connected to: a loopback, private, link-local (metadata services
//!    included), unspecified, multicast or otherwise non-public address is
//!    used only if an entry names it literally (`http://127.0.0.1:8080`);
//!    otherwise the guest gets `destination-IP-prohibited`. The address
//!    checked is the address connected to, so DNS rebinding cannot slip a
//!    private address in after the check.
//! 3. HTTPS is rustls (ring) with the webpki roots and the system's
//!    (`SSL_CERT_FILE` / `SSL_CERT_DIR` honoured). Redirects are returned to
//!    the guest, never followed here.
//! 4. A response body larger than `max_response_size` ends with
//!    `HTTP-response-body-size`; each request runs inside the attempt's time
//!    budget, which drops it when the budget is spent.
//! 5. Connections held open at once are bounded three ways: per attempt
//!    (`max_outbound_connections`), per queue
//!    (`max_queue_outbound_connections`), and for all guests together by
//!    the descriptors the host leaves them
//!    ([`set_guest_descriptors`](super::set_guest_descriptors)); past
//!    any of them the guest gets `connection-limit-reached`, and the
//!    attempt's log says which budget once.
//! 6. What goes wrong on a connection is the guest's to hear, and the log's
//!    only among the attempt's first few refusals: wasmtime's own hooks
//!    would log a warning for each failed connect.

use super::{
    Capability, Checking, Grant, GrantApplyError, GrantFlags, GrantedStore, Granting, Refusal,
    unplaced,
};
use crate::config::OutboundHost;
use crate::config::bounds;
use crate::sandbox::bindings::Level;
use crate::sandbox::{Budget, JobObserver};
use crate::units::ByteSize;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use toml::Spanned;
use wasmtime::component::Linker;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// The `allowed_outbound_hosts` grant of a queue.
#[derive(Debug)]
pub struct OutboundHttp {
    policy: Arc<Policy>,
}

/// What a queue's guests may reach over HTTP.
#[derive(Debug)]
struct Policy {
    allowed: Vec<OutboundHost>,
    max_response_size: u64,
    /// Connections one attempt may hold.
    per_attempt: u32,
    /// Connections the queue's attempts hold, against its budget.
    queue_connections: Arc<Semaphore>,
}

/// A queue's `allowed_outbound_hosts` and `max_response_size`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Where the guest may send HTTP(S) requests.
    pub allowed_outbound_hosts: Vec<OutboundHost>,
    /// Largest HTTP response body the guest may read, in bytes.
    pub max_response_size: u64,
    /// Connections one attempt may hold open at once.
    pub max_outbound_connections: u32,
    /// Connections the queue's attempts may hold open at once, together.
    pub max_queue_outbound_connections: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            allowed_outbound_hosts: Vec::new(),
            max_response_size: bounds::MAX_RESPONSE_SIZE.default.0,
            max_outbound_connections: bounds::MAX_OUTBOUND_CONNECTIONS.default,
            max_queue_outbound_connections: bounds::MAX_QUEUE_OUTBOUND_CONNECTIONS.default,
        }
    }
}

/// The keys as written.
#[derive(Deserialize, Default)]
pub struct Raw {
    #[serde(default)]
    allowed_outbound_hosts: Vec<Spanned<String>>,
    max_response_size: Option<Spanned<ByteSize>>,
    max_outbound_connections: Option<Spanned<u32>>,
    max_queue_outbound_connections: Option<Spanned<u32>>,
}

impl Capability for OutboundHttp {
    const KEYS: &'static [&'static str] = &[
        "allowed_outbound_hosts",
        "max_response_size",
        "max_outbound_connections",
        "max_queue_outbound_connections",
    ];
    const FLAG: &'static str = "--allow-host";
    type Raw = Raw;
    type Config = HttpConfig;

    /// Each entry is Spin's `scheme://host[:port]`; the body cap is in
    /// range.
    fn check(raw: Raw, _: &Checking<'_>) -> Result<HttpConfig, Refusal> {
        let mut allowed_outbound_hosts = Vec::new();
        for entry in raw.allowed_outbound_hosts {
            let parsed = entry.get_ref().parse::<OutboundHost>().map_err(|reason| {
                Refusal::at(entry.span(), format!("allowed_outbound_hosts: {reason}"))
            })?;
            allowed_outbound_hosts.push(parsed);
        }
        let max_response_size = bounds::MAX_RESPONSE_SIZE
            .read(raw.max_response_size)
            .map_err(Refusal::from)?
            .0;
        let max_outbound_connections = bounds::MAX_OUTBOUND_CONNECTIONS
            .read(raw.max_outbound_connections)
            .map_err(Refusal::from)?;
        let max_queue_outbound_connections = bounds::MAX_QUEUE_OUTBOUND_CONNECTIONS
            .read(raw.max_queue_outbound_connections)
            .map_err(Refusal::from)?;
        Ok(HttpConfig {
            allowed_outbound_hosts,
            max_response_size,
            max_outbound_connections,
            max_queue_outbound_connections,
        })
    }

    /// `--allow-host SCHEME://HOST[:PORT]`.
    fn add_flags(raw: &mut Raw, flags: &GrantFlags) -> Result<(), String> {
        raw.allowed_outbound_hosts
            .extend(flags.allow_hosts.iter().cloned().map(unplaced));
        Ok(())
    }

    fn unit(config: &HttpConfig) -> Option<Self> {
        if config.allowed_outbound_hosts.is_empty() {
            return None;
        }
        Some(OutboundHttp {
            policy: Arc::new(Policy {
                allowed: config.allowed_outbound_hosts.clone(),
                max_response_size: config.max_response_size,
                per_attempt: config.max_outbound_connections,
                queue_connections: Arc::new(Semaphore::new(
                    config.max_queue_outbound_connections as usize,
                )),
            }),
        })
    }

    /// `wasi:http/outgoing-handler`, for every module (a guest that imports
    /// it always loads); without the grant every request is denied.
    fn link<S: GrantedStore>(linker: &mut Linker<S>) -> wasmtime::Result<()> {
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)
    }
}

impl Grant for OutboundHttp {
    fn apply(&self, attempt: &mut Granting<'_>) -> Result<(), GrantApplyError> {
        attempt.outbound.policy = Some(self.policy.clone());
        attempt.outbound.connections = Arc::new(Semaphore::new(self.policy.per_attempt as usize));
        Ok(())
    }
}

/// Refusals one attempt writes to the log; later ones are only counted by
/// the guest's own errors, so a guest looping on a refused request cannot
/// flood the host's log.
const REFUSALS_LOGGED: u32 = 5;

/// The `wasi:http` hooks of one attempt's store: its queue's policy (none:
/// every request denied) and where refusals are reported.
pub struct Outbound {
    policy: Option<Arc<Policy>>,
    observer: Arc<dyn JobObserver>,
    refusals: Arc<std::sync::atomic::AtomicU32>,
    /// Connections the attempt holds, against its budget.
    connections: Arc<Semaphore>,
}

impl Outbound {
    /// Hooks that deny every request until a grant gives a policy, and report
    /// refusals to `observer`.
    pub(crate) fn new(observer: Arc<dyn JobObserver>) -> Self {
        Outbound {
            policy: None,
            observer,
            refusals: Default::default(),
            connections: Arc::new(Semaphore::new(0)),
        }
    }

    fn refusals(&self) -> Refusals {
        Refusals {
            observer: self.observer.clone(),
            count: self.refusals.clone(),
        }
    }

    /// A place for one more connection in every budget, or the first budget
    /// that has none.
    fn admit(&self, policy: &Policy) -> Result<Admitted, Budget> {
        let attempt = self
            .connections
            .clone()
            .try_acquire_owned()
            .map_err(|_| Budget::AttemptConnections)?;
        let queue = policy
            .queue_connections
            .clone()
            .try_acquire_owned()
            .map_err(|_| Budget::QueueConnections)?;
        let host = super::guest_descriptors()
            .clone()
            .try_acquire_owned()
            .map_err(|_| Budget::HostDescriptors)?;
        Ok(Admitted {
            _permits: [attempt, queue, host],
        })
    }
}

/// One connection's place in the attempt's, the queue's and the host's
/// budgets, given back when it closes.
struct Admitted {
    _permits: [OwnedSemaphorePermit; 3],
}

/// Where a request goes.
struct Target {
    scheme: &'static str,
    host: String,
    port: u16,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}://[{}]:{}", self.scheme, self.host, self.port)
        } else {
            write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
        }
    }
}

/// Reports a refusal, the first few of an attempt.
#[derive(Clone)]
struct Refusals {
    observer: Arc<dyn JobObserver>,
    count: Arc<std::sync::atomic::AtomicU32>,
}

impl Refusals {
    fn report(&self, message: impl FnOnce() -> String) {
        let n = self
            .count
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n < REFUSALS_LOGGED {
            self.observer.log(Level::Warn, &message());
        }
    }
}

type Response = http::Response<WasiBody>;
type Io = Box<dyn Future<Output = Result<(), Error>> + Send>;

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = wasmtime_wasi_http::Result<(Response, Io)>> + Send> {
        let refusals = self.refusals();
        let Some(target) = target(request.uri()) else {
            return Box::new(refuse(request, Error::HttpRequestUriInvalid));
        };
        let policy = match &self.policy {
            Some(policy)
                if policy
                    .allowed
                    .iter()
                    .any(|entry| entry.allows(target.scheme, &target.host, target.port)) =>
            {
                policy.clone()
            }
            _ => {
                refusals.report(|| {
                    format!(
                        "bullpen: HTTP request to {target} refused: not in the queue's allowed_outbound_hosts"
                    )
                });
                return Box::new(refuse(request, Error::HttpRequestDenied));
            }
        };
        let admitted = match self.admit(&policy) {
            Ok(admitted) => admitted,
            Err(budget) => {
                self.observer.over_budget(budget);
                return Box::new(refuse(request, Error::ConnectionLimitReached));
            }
        };
        Box::new(send(policy, target, request, options, refusals, admitted))
    }

    // What goes wrong on a connection: the guest hears the code; the log,
    // among the attempt's first refusals (wasmtime's defaults warn on each).

    fn p2_error_from_hyper(&mut self, err: &hyper::Error) -> ErrorCode {
        self.refusals()
            .report(|| format!("bullpen: HTTP protocol error: {err}"));
        ErrorCode::HttpProtocolError
    }

    fn p2_error_from_connect(&mut self, err: &std::io::Error) -> ErrorCode {
        self.refusals()
            .report(|| format!("bullpen: HTTP connection failed: {err}"));
        ErrorCode::ConnectionRefused
    }

    fn p2_error_from_tls(&mut self, err: &std::io::Error) -> ErrorCode {
        self.refusals()
            .report(|| format!("bullpen: HTTPS handshake failed: {err}"));
        ErrorCode::TlsProtocolError
    }
}

/// The scheme, host and port of a request's URI.
fn target(uri: &http::Uri) -> Option<Target> {
    let scheme = match uri.scheme_str()? {
        "http" => "http",
        "https" => "https",
        _ => return None,
    };
    let host = uri.host()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
        .to_ascii_lowercase();
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    Some(Target { scheme, host, port })
}

/// Whether `ip` is an address a guest reaches only when an entry names it:
/// anything but a public unicast address.
pub fn is_non_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0 // "this network", 0.0.0.0 included
                || (a == 100 && (64..128).contains(&b)) // shared (CGNAT) space
                || (a == 192 && b == 0) // IETF protocol assignments
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || a >= 240 // reserved
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_non_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
                || first == 0x2001 && v6.segments()[1] == 0x0db8 // documentation
                || first == 0x0064 && v6.segments()[1] == 0xff9b // NAT64 to any v4
                || first == 0x2002 // 6to4, which embeds any v4
        }
    }
}

/// Fails a request with `error` once the guest has written its body.
///
/// The guest writes the body while it waits for the response; ending the
/// body's stream first would make its write fail (`connection reset`), and
/// that error, not this one, is what a client such as wstd reports.
async fn refuse(
    request: http::Request<WasiBody>,
    error: Error,
) -> wasmtime_wasi_http::Result<(Response, Io)> {
    let mut body = request.into_body();
    while let Some(Ok(_)) = body.frame().await {}
    Err(error)
}

/// The request as hyper will send it: a GET, HEAD or CONNECT that names no
/// length goes out with no body, and hyper drops its body at once.
///
/// The guest may still be writing that (usually empty) body when hyper
/// drops it, and its write then fails (`connection reset`, wstd says) — a
/// race with the host's connect that a guest slowed by its CPU share loses.
/// So the body is read to its end here, alongside the request, as a server
/// that ignores it would; the task ends when the guest finishes or drops it.
fn unsent_body_drained(request: http::Request<WasiBody>) -> http::Request<WasiBody> {
    use http::{Method, header};
    let sends_body = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::CONNECT
    ) || request.headers().contains_key(header::CONTENT_LENGTH)
        || request.headers().contains_key(header::TRANSFER_ENCODING);
    if sends_body {
        return request;
    }
    let (head, mut body) = request.into_parts();
    tokio::spawn(async move { while let Some(Ok(_)) = body.frame().await {} });
    let empty = http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync();
    http::Request::from_parts(head, empty)
}

/// Connects to an allowed request's server and sends the request.
async fn send(
    policy: Arc<Policy>,
    target: Target,
    request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
    refusals: Refusals,
    admitted: Admitted,
) -> wasmtime_wasi_http::Result<(Response, Io)> {
    let (mut sender, conn) = match open(&policy, &target, options, &refusals).await {
        Ok(connection) => connection,
        Err(error) => return refuse(request, error).await,
    };
    let mut request = unsent_body_drained(request);
    // The connection is to the server itself, not a proxy: the request line
    // carries only the path and query.
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(
            request
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned(),
        )
        .build()
        .map_err(|_| Error::HttpRequestUriInvalid)?;

    // The connection's I/O runs alongside the request until the response
    // head is in; a server that answers and closes (HTTP/1.0 style) ends
    // the connection first, with the response already delivered.
    let mut conn = Some(Box::pin(conn));
    let first_byte = options.and_then(|o| o.first_byte_timeout);
    let response = within(first_byte, async {
        let send = sender.send_request(request);
        tokio::pin!(send);
        let running = conn.as_mut().expect("not yet polled");
        tokio::select! {
            biased;
            response = &mut send => response.map_err(Error::from),
            closed = running => {
                conn = None;
                closed?;
                send.await.map_err(Error::from)
            }
        }
    })
    .await
    .unwrap_or(Err(Error::ConnectionReadTimeout))?;

    let limit = policy.max_response_size;
    if response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|length| length > limit)
    {
        return Err(Error::HttpResponseBodySize(Some(limit)));
    }
    let response = response.map(|body| {
        Capped {
            body,
            left: limit,
            limit,
        }
        .boxed_unsync()
    });
    // Ends with the connection, and gives its place in the budgets back.
    // An error is the attempt's to log (wasmtime's task would warn on each).
    let io: Io = Box::new(async move {
        let _admitted = admitted;
        if let Some(conn) = conn
            && let Err(error) = conn.await
        {
            refusals.report(|| format!("bullpen: HTTP connection ended with an error: {error}"));
        }
        Ok(())
    });
    Ok((response, io))
}

/// Resolves the target, keeps the addresses the policy allows, connects
/// (with TLS for https) and does the HTTP/1.1 handshake.
async fn open(
    policy: &Policy,
    target: &Target,
    options: Option<RequestOptions>,
    refusals: &Refusals,
) -> wasmtime_wasi_http::Result<(SendRequest, Connection)> {
    let addresses: Vec<SocketAddr> = match target.host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, target.port)],
        Err(_) => tokio::net::lookup_host((target.host.as_str(), target.port))
            .await
            .map_err(|e| Error::DnsError {
                rcode: Some(e.to_string()),
                info_code: None,
            })?
            .collect(),
    };
    let (usable, prohibited): (Vec<SocketAddr>, Vec<SocketAddr>) =
        addresses.into_iter().partition(|address| {
            !is_non_public(address.ip())
                || policy
                    .allowed
                    .iter()
                    .any(|entry| entry.names_address(target.scheme, address.ip(), target.port))
        });
    if usable.is_empty() {
        refusals.report(|| {
            let shown: Vec<String> = prohibited.iter().map(|a| a.ip().to_string()).collect();
            format!(
                "bullpen: HTTP request to {target} refused: it resolves to {}, which only an allowed_outbound_hosts entry naming the address itself grants",
                if shown.is_empty() { "nothing".to_owned() } else { shown.join(", ") }
            )
        });
        return Err(if prohibited.is_empty() {
            Error::DestinationNotFound
        } else {
            Error::DestinationIpProhibited
        });
    }

    let connect_timeout = options.and_then(|o| o.connect_timeout);
    let stream = connect(&usable, connect_timeout).await?;
    let io: Box<dyn Stream> = if target.scheme == "https" {
        let name = match target.host.parse::<IpAddr>() {
            Ok(ip) => rustls::pki_types::ServerName::from(ip),
            Err(_) => rustls::pki_types::ServerName::try_from(target.host.clone())
                .map_err(|_| Error::HttpRequestUriInvalid)?,
        };
        let tls = tokio_rustls::TlsConnector::from(tls_config())
            .connect(name, stream)
            .await
            .map_err(tls_error)?;
        Box::new(tls)
    } else {
        Box::new(stream)
    };
    Ok(hyper::client::conn::http1::handshake(TokioIo::new(io)).await?)
}

type SendRequest = hyper::client::conn::http1::SendRequest<WasiBody>;
type Connection = hyper::client::conn::http1::Connection<TokioIo<Box<dyn Stream>>, WasiBody>;

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Stream for T {}

/// `future`, or `None` once `limit` (if any) has passed.
async fn within<F: Future>(limit: Option<Duration>, future: F) -> Option<F::Output> {
    match limit {
        Some(limit) => tokio::time::timeout(limit, future).await.ok(),
        None => Some(future.await),
    }
}

/// Connects to the first address that answers.
async fn connect(
    addresses: &[SocketAddr],
    timeout: Option<Duration>,
) -> wasmtime_wasi_http::Result<TcpStream> {
    let mut last = Error::ConnectionRefused;
    for address in addresses {
        match within(timeout, TcpStream::connect(address)).await {
            Some(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Some(Err(e)) => last = Error::Connect(e),
            None => last = Error::ConnectionTimeout,
        }
    }
    Err(last)
}

fn tls_error(error: std::io::Error) -> Error {
    let certificate = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|e| {
            matches!(
                e,
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
            )
        });
    if certificate {
        Error::TlsCertificateError
    } else {
        Error::Tls(error)
    }
}

/// The TLS client configuration every attempt shares: built once, at the
/// first HTTPS request, from the webpki roots and the system's certificates.
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let native = rustls_native_certs::load_native_certs();
            for error in &native.errors {
                tracing::debug!("system certificates: {error}");
            }
            let (added, _ignored) = roots.add_parsable_certificates(native.certs);
            tracing::debug!("TLS roots: webpki and {added} from the system");
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// A response body that ends with `HTTP-response-body-size` once it has
/// given `limit` bytes and has more.
struct Capped {
    body: hyper::body::Incoming,
    left: u64,
    limit: u64,
}

impl Body for Capped {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let frame = match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(Error::from(e)))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        if let Some(data) = frame.data_ref() {
            let len = data.len() as u64;
            if len > self.left {
                return Poll::Ready(Some(Err(Error::HttpResponseBodySize(Some(self.limit)))));
            }
            self.left -= len;
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_pass_without_being_named() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(is_non_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "172.32.0.1", "2606:4700::1111"] {
            assert!(!is_non_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn targets_take_the_schemes_port() {
        let t = target(&"https://Example.com/x".parse().unwrap()).unwrap();
        assert_eq!(t.to_string(), "https://example.com:443");
        let t = target(&"http://[::1]:8080/".parse().unwrap()).unwrap();
        assert_eq!(
            (t.host.as_str(), t.to_string().as_str()),
            ("::1", "http://[::1]:8080")
        );
        assert!(target(&"ftp://example.com/".parse().unwrap()).is_none());
    }
}
