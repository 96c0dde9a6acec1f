//! One HTTP/1.1 exchange on a stream the caller connected (plain TCP, or TLS it set up itself so
//! that it can look at the peer's certificate), with hyper doing the protocol: the request is
//! written, the answer's status line and headers are read, and the body only when asked for, up to
//! a limit. Used by the certificate webhook, the static pods' liveness probe, the bootstrap's
//! `/readyz` checks and the demo's scrapes of the daemon's `/metrics`.

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// How an [`exchange`] failed.
#[derive(Debug)]
pub(crate) enum HttpFailure {
    /// The request could not be written, or the connection ended before an answer.
    NoAnswer(String),
    /// The answer is not HTTP.
    NotHttp,
}

/// Sends `request` on `stream` and returns the answer's status. Header names are written in
/// title case (`Content-Type`), as most HTTP/1.1 clients do and as some receivers expect.
pub(crate) async fn exchange<S>(
    stream: S,
    request: Request<Full<Bytes>>,
) -> Result<StatusCode, HttpFailure>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (response, _driver) = send(stream, request).await?;
    Ok(response.status())
}

/// Like [`exchange`], and reads the body too; a body over `limit` bytes is an error.
pub(crate) async fn exchange_body<S>(
    stream: S,
    request: Request<Full<Bytes>>,
    limit: usize,
) -> Result<(StatusCode, Bytes), HttpFailure>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (response, _driver) = send(stream, request).await?;
    let status = response.status();
    let body = http_body_util::Limited::new(response.into_body(), limit)
        .collect()
        .await
        .map_err(|e| HttpFailure::NoAnswer(format!("reading the body: {e}")))?
        .to_bytes();
    Ok((status, body))
}

/// The answer's head, and the task driving the connection (the body is read through it).
async fn send<S>(
    stream: S,
    request: Request<Full<Bytes>>,
) -> Result<(Response<Incoming>, AbortOnDrop<ConnectionResult>), HttpFailure>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .title_case_headers(true)
        .handshake::<_, Full<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|e| HttpFailure::NoAnswer(e.to_string()))?;
    // The connection task drives the socket; it is stopped once the caller is done with the
    // answer, or when this future is dropped at the caller's timeout.
    let mut driver = AbortOnDrop(tokio::spawn(connection));
    match sender.send_request(request).await {
        Ok(response) => Ok((response, driver)),
        Err(e) if e.is_parse() => Err(HttpFailure::NotHttp),
        Err(e) => {
            // The request side only learns that the connection went away; the connection's own
            // error says why (a TLS alert, a reset, an answer that is not HTTP).
            match (&mut driver.0).await {
                Ok(Err(conn)) if conn.is_parse() => Err(HttpFailure::NotHttp),
                Ok(Err(conn)) => Err(HttpFailure::NoAnswer(chain(&conn))),
                _ => Err(HttpFailure::NoAnswer(chain(&e))),
            }
        }
    }
}

type ConnectionResult = Result<(), hyper::Error>;

/// An error and its causes on one line, each once.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
