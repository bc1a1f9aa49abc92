//! A keep-alive HTTP/1.1 POST client (publishers, SSE chat senders).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;

use super::{ConnectError, Ctx, tcp_connect_from};

/// One HTTP/1.1 connection used for sequential POSTs; reconnects when it breaks.
#[derive(Debug, Default)]
pub(crate) struct Poster {
    sender: Option<SendRequest<Full<Bytes>>>,
    /// Source address of its connections (`source_addrs`), if any.
    source: Option<std::net::IpAddr>,
}

impl From<Option<std::net::IpAddr>> for Poster {
    /// A poster whose connections leave from `source`.
    fn from(source: Option<std::net::IpAddr>) -> Self {
        Self {
            sender: None,
            source,
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
            let tcp = tcp_connect_from(ctx.target, self.source).await?;
            let (sender, conn) = http1::Builder::new()
                .handshake(TokioIo::new(tcp))
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
        let sender = self.sender(ctx).await?;
        let mut req = hyper::Request::post(path)
            .header("host", ctx.host())
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
