//! A loopback HTTP(S) server for the outbound-HTTP tests: real sockets,
//! real HTTP/1.1, answers chosen by the request's path, every request kept.
//!
//! | path | answer |
//! |---|---|
//! | `/ok` | 200 `ok` |
//! | `/ok-close` | 200 `ok`, then the connection is closed (as HTTP/1.0 servers do) |
//! | `/count/ANY` | 200 `ok` (a processor counting its runs, one path per job) |
//! | `/status/N` | N (429 with `Retry-After: 1`) |
//! | `/fail-first/N` | 503 to the first N requests on this path, then 200 |
//! | `/limit-first/N` | 429 with `Retry-After: 1` to the first N, then 200 |
//! | `/big/N` | 200 with an N-byte body |
//! | `/redirect` | 302 to `http://example.invalid/` |
//! | `/hang` | nothing, ever |

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request as the server read it.
#[derive(Debug, Clone)]
pub struct Received {
    /// `POST`, `GET`, ...
    pub method: String,
    /// The request target (`/ok`).
    pub path: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    /// The body.
    pub body: Vec<u8>,
}

/// A running server; it stops when the test's runtime does.
#[derive(Clone)]
pub struct HookServer {
    /// Where it listens (127.0.0.1, a free port).
    pub addr: SocketAddr,
    received: Arc<Mutex<Log>>,
}

/// The requests, and how many came on each path.
#[derive(Default)]
struct Log {
    requests: Vec<Received>,
    per_path: HashMap<String, usize>,
}

impl HookServer {
    /// Starts a plain HTTP server on a free loopback port.
    pub async fn start() -> HookServer {
        Self::serve(None).await
    }

    /// Starts an HTTPS server presenting `cert_pem` (a chain) with `key_pem`.
    pub async fn start_tls(cert_pem: &str, key_pem: &str) -> HookServer {
        use rustls::pki_types::pem::PemObject;
        let certs = rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        Self::serve(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn serve(tls: Option<tokio_rustls::TlsAcceptor>) -> HookServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = HookServer {
            addr: listener.local_addr().unwrap(),
            received: Default::default(),
        };
        let shared = server.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                // Answers go out at once: with Nagle's algorithm a kept-alive
                // client waits for its delayed ACK on every request.
                let _ = stream.set_nodelay(true);
                let server = shared.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(stream).await {
                                server.connection(stream).await;
                            }
                        }
                        None => server.connection(stream).await,
                    }
                });
            }
        });
        server
    }

    /// `http://127.0.0.1:PORT` (or `https://`) followed by `path`.
    pub fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://{}{path}", self.addr)
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().requests.clone()
    }

    /// How many requests came so far.
    pub fn count(&self) -> usize {
        self.received.lock().unwrap().requests.len()
    }

    /// How many requests came so far on each path.
    pub fn counts(&self) -> HashMap<String, usize> {
        self.received.lock().unwrap().per_path.clone()
    }

    /// Those of `paths` not requested exactly once, with their counts (a
    /// processor counting its runs: one path per job).
    pub fn not_once(&self, paths: impl IntoIterator<Item = String>) -> Vec<(String, usize)> {
        let counts = self.counts();
        paths
            .into_iter()
            .map(|path| {
                let n = counts.get(&path).copied().unwrap_or(0);
                (path, n)
            })
            .filter(|(_, n)| *n != 1)
            .collect()
    }

    /// The requests so far on `path`.
    pub fn received_on(&self, path: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    async fn connection(&self, mut stream: impl AsyncRead + AsyncWrite + Unpin) {
        let mut buffer = Vec::new();
        loop {
            let Some(request) = read_request(&mut stream, &mut buffer).await else {
                return;
            };
            let path = request.path.clone();
            let earlier = {
                let mut log = self.received.lock().unwrap();
                let count = log.per_path.entry(path.clone()).or_default();
                let earlier = *count;
                *count += 1;
                log.requests.push(request);
                earlier
            };
            let (status, extra, body) = answer(&path, earlier);
            if status == 0 {
                // `/hang`: hold the connection open, say nothing.
                std::future::pending::<()>().await;
            }
            let close = path == "/ok-close";
            let head = format!(
                "HTTP/1.{} {status} X\r\ncontent-length: {}\r\n{extra}{}\r\n",
                if close { 0 } else { 1 },
                body.len(),
                if close { "connection: close\r\n" } else { "" },
            );
            let mut answer = head.into_bytes();
            answer.extend_from_slice(&body);
            if stream.write_all(&answer).await.is_err() || stream.flush().await.is_err() || close {
                let _ = stream.shutdown().await;
                return;
            }
        }
    }
}

/// Status (0: never answer), extra header lines, body.
fn answer(path: &str, earlier: usize) -> (u16, String, Vec<u8>) {
    let number = |prefix: &str| path.strip_prefix(prefix)?.parse::<usize>().ok();
    if path == "/ok" || path == "/ok-close" || path.starts_with("/count/") {
        (200, String::new(), b"ok".to_vec())
    } else if let Some(status) = number("/status/") {
        let extra = if status == 429 {
            "retry-after: 1\r\n".to_owned()
        } else {
            String::new()
        };
        (
            status as u16,
            extra,
            format!("status {status}").into_bytes(),
        )
    } else if let Some(failures) = number("/fail-first/") {
        if earlier < failures {
            (503, String::new(), b"try again".to_vec())
        } else {
            (200, String::new(), b"ok".to_vec())
        }
    } else if let Some(limited) = number("/limit-first/") {
        if earlier < limited {
            (429, "retry-after: 1\r\n".to_owned(), b"slow down".to_vec())
        } else {
            (200, String::new(), b"ok".to_vec())
        }
    } else if let Some(size) = number("/big/") {
        (200, String::new(), vec![b'x'; size])
    } else if path == "/redirect" {
        (
            302,
            "location: http://example.invalid/\r\n".to_owned(),
            Vec::new(),
        )
    } else if path == "/hang" {
        (0, String::new(), Vec::new())
    } else {
        (404, String::new(), b"no such hook".to_vec())
    }
}

/// Reads one request (head, then a `content-length` body); `None` at end of
/// stream or on anything malformed.
async fn read_request(
    stream: &mut (impl AsyncRead + Unpin),
    buffer: &mut Vec<u8>,
) -> Option<Received> {
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buffer[..head_end].to_vec()).ok()?;
    buffer.drain(..head_end + 4);
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let path = first.next()?.to_owned();
    let headers: HashMap<String, String> = lines
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            Some((name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        })
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buffer.len() < length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = buffer.drain(..length).collect();
    Some(Received {
        method,
        path,
        headers,
        body,
    })
}

/// A test certificate authority and a server certificate it signed for
/// `127.0.0.1` and `localhost`: (CA PEM, server chain PEM, server key PEM).
pub fn test_certificates() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "bullpen test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    (ca.pem(), leaf.pem(), key.serialize_pem())
}
