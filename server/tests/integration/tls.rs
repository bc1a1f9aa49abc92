//! HTTPS through the server's own TLS accept loop: HTTP/2 (ALPN `h2`) and HTTP/1.1 (ALPN
//! `http/1.1`) streams on one port, both ended cleanly by a graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use server::{ServerConfig, TlsIdentity};
use testkit::certs::{self, TestPki};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use crate::support::{self, DEADLINE, closed_series};

/// A TLS connection to `addr` as `localhost`, trusting `pki`'s CA, offering only `alpn`.
async fn connect(addr: SocketAddr, pki: &TestPki, alpn: &[u8]) -> TlsStream<TcpStream> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&pki.ca_cert).expect("CA file") {
        roots.add(cert.expect("CA PEM")).expect("CA accepted");
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = TcpStream::connect(addr).await.expect("TCP connect");
    let name = ServerName::try_from("localhost").expect("name");
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn), "ALPN chosen");
    tls
}

#[tokio::test]
async fn https_serves_h2_and_http11_streams_and_shutdown_ends_both() {
    let dir = std::env::temp_dir().join(format!("rt-server-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let pki = certs::generate(&dir, "rt-server", &[]);
    let config = ServerConfig {
        tls: Some(TlsIdentity {
            cert_pem: std::fs::read(&pki.server_cert).expect("cert"),
            key_pem: std::fs::read(&pki.server_key).expect("key"),
        }),
        ..support::config()
    };
    let server = support::start(config).await;
    let addr = server.local_addr();
    let metrics = server.metrics();

    // HTTP/2: a stream on a hyper client connection.
    let io = TokioIo::new(connect(addr, &pki, b"h2").await);
    let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .expect("h2 handshake");
    let h2_conn = tokio::spawn(conn);
    let req = hyper::Request::get(format!(
        "https://localhost:{}/sse/notifications",
        addr.port()
    ))
    .header("accept", "text/event-stream")
    .body(Empty::<Bytes>::new())
    .expect("request");
    let res = sender.send_request(req).await.expect("h2 response");
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), hyper::Version::HTTP_2);
    let mut h2_body = res.into_body();
    let first = timeout(DEADLINE, h2_body.frame())
        .await
        .expect("first frame in time")
        .expect("a frame")
        .expect("no error");
    let first = first.into_data().expect("data");
    assert!(first.starts_with(b"retry: "), "{first:?}");

    // HTTP/1.1 on the same port: the raw request and chunked answer.
    let mut h1 = connect(addr, &pki, b"http/1.1").await;
    h1.write_all(
        b"GET /sse/notifications HTTP/1.1\r\nhost: localhost\r\naccept: text/event-stream\r\n\r\n",
    )
    .await
    .expect("request");
    let mut head = Vec::new();
    while !head.windows(7).any(|w| w == b"retry: ") {
        let mut buf = [0u8; 1024];
        let n = timeout(DEADLINE, h1.read(&mut buf))
            .await
            .expect("answer in time")
            .expect("read");
        assert!(n > 0, "closed before the stream opened");
        head.extend_from_slice(&buf[..n]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200 OK\r\n"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    assert_eq!(metrics.open_total(), 2);

    let stopping = tokio::spawn(server.shutdown(DEADLINE));
    // Both streams end cleanly: the h2 body without an error, the chunked body with its last
    // chunk.
    while let Some(frame) = timeout(DEADLINE, h2_body.frame())
        .await
        .expect("h2 ends in time")
    {
        frame.expect("h2 stream ends without an error");
    }
    let mut rest = Vec::new();
    timeout(DEADLINE, h1.read_to_end(&mut rest))
        .await
        .expect("HTTP/1.1 stream ends in time")
        .expect("read to the end");
    assert!(
        rest.ends_with(b"0\r\n\r\n"),
        "{}",
        String::from_utf8_lossy(&rest)
    );
    timeout(DEADLINE, stopping)
        .await
        .expect("shutdown within the deadline")
        .expect("shutdown task");
    let _ = timeout(DEADLINE, h2_conn).await;
    let text = metrics.render(0);
    assert!(
        text.contains(&format!(
            "{} 2",
            closed_series("notifications", "sse", "shutdown")
        )),
        "{text}"
    );
    assert_eq!(metrics.open_total(), 0);
    // The listener is gone.
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
