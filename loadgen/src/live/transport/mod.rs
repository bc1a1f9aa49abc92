//! Connections to the target, written once for every client: names resolved once per run
//! ([`resolve`]), TCP from an optional source address, TLS by rustls ([`tls`]), one
//! [`Stream`] type the HTTP/1.1, HTTP/2 and WebSocket clients run over.

pub mod ports;
pub(crate) mod resolve;
pub(crate) mod stream;
pub mod tls;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::live::stats::Counters;
use crate::scenario::TargetUrl;
pub use resolve::ResolveError;
pub(crate) use resolve::{Endpoint, Endpoints};
pub(crate) use stream::Stream;
use tls::TlsConfigs;
pub use tls::{TlsOptions, TlsSetupError};

/// How long one TCP connect, TLS handshake or HTTP handshake may take before it counts as a
/// timeout.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Which protocols a TLS connection offers by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alpn {
    /// `http/1.1` only (HTTP/1.1 streams, WebSocket upgrades, POSTs).
    Http1,
    /// `h2`, then `http/1.1`.
    H2,
}

/// An open connection and what opening it cost.
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) stream: Stream,
    /// TLS handshake time in µs (`None` on plain TCP).
    pub(crate) tls_us: Option<u64>,
}

/// Opens connections: TCP, then TLS for `https` targets. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Connector {
    tls: TlsConfigs,
}

impl Connector {
    /// A connector verifying servers as `options` say.
    ///
    /// # Errors
    /// [`TlsSetupError`] for an unusable CA file.
    pub(crate) fn new(options: &TlsOptions) -> Result<Self, TlsSetupError> {
        Ok(Self {
            tls: TlsConfigs::new(options)?,
        })
    }

    /// Connects to `addr` (one of `url`'s addresses) from `source`; TLS with SNI and
    /// certificate checks for `url.host` when the URL is `https`.
    pub(crate) async fn open(
        &self,
        url: &TargetUrl,
        addr: SocketAddr,
        source: Option<IpAddr>,
        alpn: Alpn,
    ) -> Result<Opened, ConnectError> {
        let tcp = tcp_connect_from(addr, source).await?;
        if !url.secure {
            return Ok(Opened {
                stream: Stream::Plain(tcp),
                tls_us: None,
            });
        }
        let config = match alpn {
            Alpn::Http1 => &self.tls.http1,
            Alpn::H2 => &self.tls.h2,
        };
        let name = tls::server_name(&url.host).map_err(ConnectError::Tls)?;
        let started = Instant::now();
        let handshake =
            tokio_rustls::TlsConnector::from(std::sync::Arc::clone(config)).connect(name, tcp);
        let tls = tokio::time::timeout(CONNECT_TIMEOUT, handshake)
            .await
            .map_err(|_| ConnectError::Timeout)?
            .map_err(|e| match e.kind() {
                io::ErrorKind::InvalidData => ConnectError::Tls(tls::failure_reason(&e)),
                _ => ConnectError::from_io(&e),
            })?;
        let tls_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        Ok(Opened {
            stream: Stream::Tls(Box::new(tls)),
            tls_us: Some(tls_us),
        })
    }
}

/// Opens a TCP connection from `source` (any port), or from the address the OS picks, with
/// `TCP_NODELAY`, bounded by [`CONNECT_TIMEOUT`].
pub(crate) async fn tcp_connect_from(
    addr: SocketAddr,
    source: Option<IpAddr>,
) -> Result<TcpStream, ConnectError> {
    let connect = async {
        match source {
            None => TcpStream::connect(addr).await,
            Some(ip) => {
                let socket = if addr.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()?
                } else {
                    tokio::net::TcpSocket::new_v6()?
                };
                // The source port is chosen at connect time, by the whole 4-tuple: bound to
                // port 0 without this, Linux reserves each port for the address alone and
                // bind fails (EADDRINUSE) or slows to a crawl long before the range is used.
                #[cfg(target_os = "linux")]
                if let Err(e) = nix::sys::socket::setsockopt(
                    &socket,
                    nix::sys::socket::sockopt::IpBindAddressNoPort,
                    &true,
                ) {
                    tracing::debug!("IP_BIND_ADDRESS_NO_PORT refused: {e}");
                }
                socket.bind(SocketAddr::new(ip, 0))?;
                socket.connect(addr).await
            }
        }
    };
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| ConnectError::Timeout)?
        .map_err(|e| ConnectError::from_io(&e))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Why a connection attempt failed.
#[derive(Debug)]
pub(crate) enum ConnectError {
    Refused,
    Timeout,
    Reset,
    /// The TLS handshake failed; rustls's reason.
    Tls(String),
    /// HTTP status other than the expected one.
    Status(u16),
    /// A 3xx answer: not followed (point the target at the final URL).
    Redirect {
        status: u16,
        location: String,
    },
    /// 200 without `text/event-stream`.
    ContentType(String),
    Other(String),
}

impl ConnectError {
    pub(crate) fn from_io(e: &io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::ConnectionRefused => Self::Refused,
            io::ErrorKind::TimedOut => Self::Timeout,
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof => Self::Reset,
            _ => Self::Other(e.to_string()),
        }
    }

    /// Counts this failure.
    pub(crate) fn count(&self, c: &mut Counters) {
        match self {
            Self::Refused => c.failed_refused += 1,
            Self::Timeout => c.failed_timeout += 1,
            Self::Reset => c.failed_reset += 1,
            Self::Tls(_) => c.failed_tls += 1,
            Self::Status(_) | Self::Redirect { .. } => c.failed_status += 1,
            Self::ContentType(_) => c.failed_content_type += 1,
            Self::Other(_) => c.failed_other += 1,
        }
    }
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused => f.write_str("connection refused"),
            Self::Timeout => f.write_str("connect timed out"),
            Self::Reset => f.write_str("connection reset"),
            Self::Tls(reason) => write!(f, "tls: {reason}"),
            Self::Status(s) => write!(f, "HTTP status {s}"),
            Self::Redirect { status, location } => write!(
                f,
                "HTTP status {status}: redirect to {location:?} not followed (point the target and path at the final URL)"
            ),
            Self::ContentType(t) => write!(f, "content type {t:?} is not text/event-stream"),
            Self::Other(m) => f.write_str(m),
        }
    }
}
