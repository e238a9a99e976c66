//! Outbound HTTP(S) from a processor, to the hosts its queue grants in
//! `allowed_outbound_hosts`.
//!
//! ```no_run
//! use bullpen_guest::{Error, http};
//!
//! fn notify(url: &str, body: &serde_json::Value) -> bullpen_guest::Result<u16> {
//!     let response = http::post(url)
//!         .header("x-source", "bullpen")
//!         .json(body)?
//!         .send()?; // a refused, failed or timed-out request fails the attempt
//!     if response.status() >= 500 {
//!         return Err(Error::failed(format!("{url} answered {}", response.status())));
//!     }
//!     Ok(response.status())
//! }
//! ```
//!
//! Underneath is the Bytecode Alliance's [`wstd`] client, which speaks
//! `wasi:http` 0.2 directly: this module only makes it blocking (a
//! processor's `process` is a plain function) and turns `wasi:http` error
//! codes into messages that name the URL. A request to a host the queue
//! does not grant fails with [`HttpError::is_denied`] true.

use std::fmt;
use std::time::Duration;
use wstd::http::{Body, Client, Method, Request};

/// Starts a `GET` request.
pub fn get(url: impl Into<String>) -> RequestBuilder {
    RequestBuilder::new(Method::GET, url)
}

/// Starts a `POST` request.
pub fn post(url: impl Into<String>) -> RequestBuilder {
    RequestBuilder::new(Method::POST, url)
}

/// Starts a `PUT` request.
pub fn put(url: impl Into<String>) -> RequestBuilder {
    RequestBuilder::new(Method::PUT, url)
}

/// Starts a `DELETE` request.
pub fn delete(url: impl Into<String>) -> RequestBuilder {
    RequestBuilder::new(Method::DELETE, url)
}

/// A request being built; [`send`](RequestBuilder::send) sends it.
#[derive(Debug)]
pub struct RequestBuilder {
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    connect_timeout: Option<Duration>,
    first_byte_timeout: Option<Duration>,
}

impl RequestBuilder {
    fn new(method: Method, url: impl Into<String>) -> Self {
        RequestBuilder {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            connect_timeout: None,
            first_byte_timeout: None,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body to `value` as JSON, with `content-type: application/json`.
    pub fn json(self, value: &impl serde::Serialize) -> Result<Self, serde_json::Error> {
        let body = serde_json::to_vec(value)?;
        Ok(self.header("content-type", "application/json").body(body))
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Gives up when no connection is made within `limit` (the attempt's own
    /// time budget applies in any case).
    pub fn connect_timeout(mut self, limit: Duration) -> Self {
        self.connect_timeout = Some(limit);
        self
    }

    /// Gives up when the response has not started within `limit`.
    pub fn first_byte_timeout(mut self, limit: Duration) -> Self {
        self.first_byte_timeout = Some(limit);
        self
    }

    /// Sends the request and reads the whole response.
    ///
    /// Any answer is a response, 4xx and 5xx included; redirects are
    /// returned, not followed. An error means no answer: the request was
    /// refused by the host, or the connection, TLS or the body failed.
    pub fn send(self) -> Result<Response, HttpError> {
        let url = self.url.clone();
        let fail = |error: wstd::http::Error| HttpError::new(&url, error);
        let mut request = Request::builder()
            .method(self.method.clone())
            .uri(&self.url);
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        // The whole body is known: say its length, so the request is not
        // sent chunked (which many simple receivers cannot read).
        let sends_body = !self.body.is_empty() || self.method != Method::GET;
        if sends_body
            && !self
                .headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        {
            request = request.header("content-length", self.body.len());
        }
        let request = request
            .body(Body::from(self.body))
            .map_err(|e| fail(e.into()))?;
        let mut client = Client::new();
        if let Some(limit) = self.connect_timeout {
            client.set_connect_timeout(limit);
        }
        if let Some(limit) = self.first_byte_timeout {
            client.set_first_byte_timeout(limit);
        }
        wstd::runtime::block_on(async {
            let response = client.send(request).await.map_err(fail)?;
            let (parts, mut body) = response.into_parts();
            let body = body.contents().await.map_err(fail)?.to_vec();
            Ok(Response {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            })
        })
    }
}

/// A whole response.
#[derive(Debug, Clone)]
pub struct Response {
    status: u16,
    headers: wstd::http::HeaderMap,
    body: Vec<u8>,
}

impl Response {
    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// A header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }

    /// `Retry-After` in seconds, as a duration (the HTTP-date form is not
    /// read).
    pub fn retry_after(&self) -> Option<Duration> {
        let seconds = self.header("retry-after")?.trim().parse::<u64>().ok()?;
        Some(Duration::from_secs(seconds))
    }

    /// The body.
    pub fn bytes(&self) -> &[u8] {
        &self.body
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// A request that got no answer. Converts into [`crate::Error`] with `?` (an
/// ordinary, retried failure named `HttpError`); its message names the URL.
#[derive(Debug)]
pub struct HttpError {
    url: String,
    code: Option<String>,
    message: String,
}

impl HttpError {
    fn new(url: &str, error: wstd::http::Error) -> Self {
        let code = error
            .downcast_ref::<wstd::http::error::ErrorCode>()
            .map(code_name);
        HttpError {
            url: url.to_owned(),
            message: match &code {
                Some(code) => explain(code).to_owned(),
                None => format!("{error:#}"),
            },
            code,
        }
    }

    /// The `wasi:http` error code, such as `HTTP-request-denied`, when the
    /// host gave one.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// Whether the host refused the request: its host is not in the queue's
    /// `allowed_outbound_hosts`, or resolves to an address only a literal
    /// entry grants.
    pub fn is_denied(&self) -> bool {
        matches!(
            self.code(),
            Some("HTTP-request-denied" | "destination-IP-prohibited")
        )
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "HTTP request to {}: {code}: {}", self.url, self.message),
            None => write!(f, "HTTP request to {}: {}", self.url, self.message),
        }
    }
}

impl std::error::Error for HttpError {}

/// The error code's name as `wasi:http` spells it.
fn code_name(code: &wstd::http::error::ErrorCode) -> String {
    use wstd::http::error::ErrorCode as E;
    match code {
        E::DnsError(payload) => match &payload.rcode {
            Some(rcode) => format!("DNS-error ({rcode})"),
            None => "DNS-error".to_owned(),
        },
        E::DestinationNotFound => "destination-not-found".into(),
        E::DestinationIpProhibited => "destination-IP-prohibited".into(),
        E::ConnectionRefused => "connection-refused".into(),
        E::ConnectionTimeout => "connection-timeout".into(),
        E::ConnectionReadTimeout => "connection-read-timeout".into(),
        E::TlsProtocolError => "TLS-protocol-error".into(),
        E::TlsCertificateError => "TLS-certificate-error".into(),
        E::HttpRequestDenied => "HTTP-request-denied".into(),
        E::HttpRequestUriInvalid => "HTTP-request-URI-invalid".into(),
        E::HttpResponseBodySize(_) => "HTTP-response-body-size".into(),
        E::HttpResponseIncomplete => "HTTP-response-incomplete".into(),
        E::HttpProtocolError => "HTTP-protocol-error".into(),
        other => format!("{other:?}"),
    }
}

fn explain(code: &str) -> &'static str {
    match code {
        "HTTP-request-denied" => "not in this queue's allowed_outbound_hosts",
        "destination-IP-prohibited" => {
            "the host resolves to a loopback, private or link-local address, which only an allowed_outbound_hosts entry naming that address grants"
        }
        "HTTP-response-body-size" => {
            "the response body is larger than the queue's max_response_size"
        }
        "connection-refused" => "the server refused the connection",
        "TLS-certificate-error" => "the server's certificate is not trusted",
        _ => "the request got no answer",
    }
}
