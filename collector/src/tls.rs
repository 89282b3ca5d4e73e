//! The server's TLS identity: the operator's own certificate, or a private CA
//! and server certificate generated on first start so a new installation is
//! encrypted from its first minute. Agents and socctl trust the generated CA
//! by its PEM file (`<data_dir>/tls/ca.pem`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("generating the self-signed certificate: {0}")]
    Generate(String),
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// Where the generated material lives.
pub fn generated_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("tls")
}

/// The CA certificate clients must trust when the certificate was generated.
pub fn generated_ca(data_dir: &Path) -> PathBuf {
    generated_dir(data_dir).join("ca.pem")
}

/// Builds the rustls server configuration, generating a CA and a server
/// certificate first when none is configured and none was generated before.
pub fn server_config(
    data_dir: &Path,
    cert_file: Option<&Path>,
    key_file: Option<&Path>,
    extra_names: &[String],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let (cert_path, key_path) = match (cert_file, key_file) {
        (Some(c), Some(k)) => (c.to_owned(), k.to_owned()),
        _ => {
            let dir = generated_dir(data_dir);
            let cert = dir.join("server.pem");
            let key = dir.join("server.key");
            if !cert.exists() || !key.exists() {
                generate(&dir, extra_names)?;
                tracing::info!(ca = %dir.join("ca.pem").display(), "generated a private CA and server certificate");
            }
            (cert, key)
        }
    };
    let file_err = |path: &Path, message: String| TlsError::File {
        path: path.to_owned(),
        message,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| file_err(&cert_path, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(&cert_path, e.to_string()))?;
    if certs.is_empty() {
        return Err(file_err(&cert_path, "no certificate in the file".into()));
    }
    let key =
        PrivateKeyDer::from_pem_file(&key_path).map_err(|e| file_err(&key_path, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(format!("{}: {e}", cert_path.display())))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

fn generate(dir: &Path, extra_names: &[String]) -> Result<(), TlsError> {
    let g = |e: rcgen::Error| TlsError::Generate(e.to_string());
    std::fs::create_dir_all(dir).map_err(|e| TlsError::File {
        path: dir.to_owned(),
        message: e.to_string(),
    })?;

    let ca_key = KeyPair::generate().map_err(g)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(g)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "soc collector private CA");
    ca_params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    ca_params.not_after = rcgen::date_time_ymd(2045, 1, 1);
    let ca_cert = ca_params.self_signed(&ca_key).map_err(g)?;
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);

    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if let Ok(h) = std::fs::read_to_string("/etc/hostname") {
        let h = h.trim();
        if !h.is_empty() {
            names.push(h.to_owned());
        }
    }
    names.extend(extra_names.iter().cloned());
    names.dedup();
    let key = KeyPair::generate().map_err(g)?;
    let mut params = CertificateParams::new(names).map_err(g)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "soc-collector");
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2045, 1, 1);
    let cert = params.signed_by(&key, &issuer).map_err(g)?;

    let write = |name: &str, text: &str, secret: bool| -> Result<(), TlsError> {
        let path = dir.join(name);
        let res = if secret {
            crate::auth::write_secret_file(&path, text.trim_end())
        } else {
            std::fs::write(&path, text)
        };
        res.map_err(|e| TlsError::File {
            path,
            message: e.to_string(),
        })
    };
    write("ca.pem", &ca_cert.pem(), false)?;
    write("ca.key", &ca_key.serialize_pem(), true)?;
    write("server.key", &key.serialize_pem(), true)?;
    // The certificate last: its presence marks the generation complete.
    write("server.pem", &cert.pem(), false)?;
    Ok(())
}
