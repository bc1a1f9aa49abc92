//! A keep-alive HTTP/1.1 POST client (publishers, SSE chat senders).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;

use super::request::Rendered;
use super::{ConnectError, Ctx};
use crate::live::transport::{Alpn, Endpoint};

/// One HTTP/1.1 connection (TLS for https targets) used for sequential POSTs; reconnects
/// when it breaks.
#[derive(Debug)]
pub(crate) struct Poster {
    sender: Option<SendRequest<Full<Bytes>>>,
    /// The server, its address and the source address of its connections, as the
    /// connection (or publisher) it posts for.
    endpoint: Arc<Endpoint>,
    addr: SocketAddr,
    source: Option<IpAddr>,
}

impl From<&Rendered> for Poster {
    /// A poster for the connection or publisher `rendered` describes.
    fn from(rendered: &Rendered) -> Self {
        Self {
            sender: None,
            endpoint: Arc::clone(&rendered.endpoint),
            addr: rendered.addr,
            source: rendered.source,
        }
    }
}

impl Poster {
    async fn sender(&mut self, ctx: &Ctx) -> Result<&mut SendRequest<Full<Bytes>>, ConnectError> {
        let usable = match &mut self.sender {
            Some(s) => s.ready().await.is_ok(),
            None => false,
        };
        if !usable {
            let opened = ctx
                .connector
                .open(&self.endpoint.url, self.addr, self.source, Alpn::Http1)
                .await?;
            let (sender, conn) = http1::Builder::new()
                .handshake(TokioIo::new(opened.stream))
                .await
                .map_err(|e| ConnectError::Other(e.to_string()))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            self.sender = Some(sender);
        }
        self.sender
            .as_mut()
            .ok_or_else(|| ConnectError::Other("no connection".to_owned()))
    }

    /// POSTs `body` (JSON) to `path` with `headers`; returns the status and the response
    /// body.
    pub(crate) async fn post(
        &mut self,
        ctx: &Ctx,
        path: &str,
        body: String,
        headers: &hyper::header::HeaderMap,
    ) -> Result<(u16, Bytes), ConnectError> {
        let host = self.endpoint.url.host_header();
        let sender = self.sender(ctx).await?;
        let mut req = hyper::Request::post(path)
            .header("host", host)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ConnectError::Other(e.to_string()))?;
        super::request::apply(req.headers_mut(), headers);
        let result = sender.send_request(req).await;
        let res = match result {
            Ok(res) => res,
            Err(e) => {
                self.sender = None;
                return Err(ConnectError::Other(e.to_string()));
            }
        };
        let status = res.status().as_u16();
        let body = res
            .into_body()
            .collect()
            .await
            .map_err(|e| ConnectError::Other(e.to_string()))?
            .to_bytes();
        Ok((status, body))
    }
}
