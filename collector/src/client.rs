//! The HTTPS client `socctl` (and the end-to-end tests) use to talk to the API.

use std::path::Path;
use std::sync::Arc;

use reqwest::StatusCode;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use soc_protocol::ErrorBody;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{path}: {message}")]
    CaFile { path: String, message: String },
    #[error("cannot reach {server}: {message}")]
    Connect { server: String, message: String },
    #[error("{server} answered {status}: {message}")]
    Api {
        server: String,
        status: StatusCode,
        message: String,
    },
    #[error("{server} sent an answer that is not what socctl expects: {message}")]
    Decode { server: String, message: String },
    #[error("building the HTTPS client: {0}")]
    Build(String),
}

/// A client of one collector.
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// A rustls client configuration that trusts only the CA in `ca_pem_file`.
pub fn rustls_config_for_ca(ca_pem_file: &Path) -> Result<rustls::ClientConfig, ClientError> {
    let err = |message: String| ClientError::CaFile {
        path: ca_pem_file.display().to_string(),
        message,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem_file).map_err(|e| err(e.to_string()))? {
        roots
            .add(cert.map_err(|e| err(e.to_string()))?)
            .map_err(|e| err(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(err("no certificate in the file".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Build(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

impl Client {
    /// `server` is the base URL (`https://host:8443`); `ca_file` the CA to
    /// trust instead of the system's.
    pub fn new(
        server: &str,
        token: Option<String>,
        ca_file: Option<&Path>,
    ) -> Result<Client, ClientError> {
        let builder = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .user_agent(concat!("socctl/", env!("CARGO_PKG_VERSION")));
        let builder = match ca_file {
            Some(ca) => builder.tls_backend_preconfigured(rustls_config_for_ca(ca)?),
            None => {
                let _ = rustls::crypto::ring::default_provider().install_default();
                builder.tls_backend_rustls()
            }
        };
        Ok(Client {
            http: builder
                .build()
                .map_err(|e| ClientError::Build(e.to_string()))?,
            base: server.trim_end_matches('/').to_owned(),
            token,
        })
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{}", self.base, path));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    async fn send<T: DeserializeOwned>(
        &self,
        r: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let resp = r.send().await.map_err(|e| ClientError::Connect {
            server: self.base.clone(),
            message: error_chain(&e),
        })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| ClientError::Connect {
            server: self.base.clone(),
            message: error_chain(&e),
        })?;
        if !status.is_success() {
            let message = match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(b) => b.message,
                Err(_) => String::from_utf8_lossy(&bytes).trim().to_owned(),
            };
            return Err(ClientError::Api {
                server: self.base.clone(),
                status,
                message,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            server: self.base.clone(),
            message: e.to_string(),
        })
    }

    /// GET a JSON document, with query parameters.
    pub async fn get<T: DeserializeOwned, Q: Serialize + ?Sized>(
        &self,
        path: &str,
        query: &Q,
    ) -> Result<T, ClientError> {
        self.send(self.req(reqwest::Method::GET, path).query(query))
            .await
    }

    /// POST a JSON body, expecting a JSON answer.
    pub async fn post<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.send(self.req(reqwest::Method::POST, path).json(body))
            .await
    }
}

impl Client {
    /// POST raw bytes (a file) with query parameters, expecting a JSON
    /// answer; waits up to `timeout` (a large restore takes a while).
    pub async fn post_bytes<T: DeserializeOwned, Q: Serialize + ?Sized>(
        &self,
        path: &str,
        query: &Q,
        body: Vec<u8>,
        timeout: std::time::Duration,
    ) -> Result<T, ClientError> {
        self.send(
            self.req(reqwest::Method::POST, path)
                .query(query)
                .timeout(timeout)
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(body),
        )
        .await
    }

    /// GETs a streaming NDJSON answer and calls `on_line` with each
    /// non-empty line as it arrives; returns when the server ends the
    /// stream. Fails if nothing (not even a keep-alive) arrives for `idle`.
    pub async fn stream_lines<Q: Serialize + ?Sized>(
        &self,
        path: &str,
        query: &Q,
        idle: std::time::Duration,
        mut on_line: impl FnMut(&str) -> Result<(), ClientError>,
    ) -> Result<(), ClientError> {
        let r = self
            .req(reqwest::Method::GET, path)
            .query(query)
            // No overall deadline for a stream; `idle` guards a dead peer.
            .timeout(std::time::Duration::from_secs(100 * 365 * 24 * 3600));
        let connect = |e: &dyn std::error::Error| ClientError::Connect {
            server: self.base.clone(),
            message: error_chain(e),
        };
        let mut resp = r.send().await.map_err(|e| connect(&e))?;
        let status = resp.status();
        if !status.is_success() {
            let bytes = resp.bytes().await.map_err(|e| connect(&e))?;
            let message = match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(b) => b.message,
                Err(_) => String::from_utf8_lossy(&bytes).trim().to_owned(),
            };
            return Err(ClientError::Api {
                server: self.base.clone(),
                status,
                message,
            });
        }
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let chunk = match tokio::time::timeout(idle, resp.chunk()).await {
                Err(_) => {
                    return Err(ClientError::Connect {
                        server: self.base.clone(),
                        message: format!("nothing received for {}s", idle.as_secs()),
                    });
                }
                Ok(r) => r.map_err(|e| connect(&e))?,
            };
            let Some(chunk) = chunk else { return Ok(()) };
            buf.extend_from_slice(&chunk);
            while let Some(i) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=i).collect();
                let line = String::from_utf8_lossy(&line);
                let line = line.trim();
                if !line.is_empty() {
                    on_line(line)?;
                }
            }
            if buf.len() > 16 * 1024 * 1024 {
                return Err(ClientError::Decode {
                    server: self.base.clone(),
                    message: "a streamed line is longer than 16 MiB".into(),
                });
            }
        }
    }
}

/// An error with its causes, which is where reqwest keeps the useful part
/// (connection refused, certificate unknown, ...).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
