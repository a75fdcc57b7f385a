//! The client side's plumbing: the connection (with its token), how
//! results are printed, client errors and their exit codes, JSON arguments.

use anyhow::Context;
use sagaflow_proto::json;
use sagaflow_proto::v1::workflow_service_client::WorkflowServiceClient;
use serde_json::Value;
use tonic::transport::Channel;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// An error of a client command, with the exit code it gets.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server refused the request (exit code 1).
    #[error("{}: {}", code_name(.0.code()), .0.message())]
    Refused(tonic::Status),
    /// The command line was wrong (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// The server could not be reached (exit code 1).
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
    /// The run ended (or stopped for an operator) other than COMPLETED
    /// (exit code 3): `workflow watch`, `workflow start --wait`.
    #[error("the run ended {0}")]
    Outcome(String),
}

impl From<tonic::Status> for ClientError {
    fn from(s: tonic::Status) -> Self {
        ClientError::Refused(s)
    }
}

impl ClientError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Usage(_) => 2,
            ClientError::Outcome(_) => 3,
            _ => 1,
        }
    }
}

pub(crate) fn code_name(c: tonic::Code) -> String {
    sagaflow_engine::api::audit::code_name(c)
}

/// A connected client.
pub struct Client {
    pub(super) inner: WorkflowServiceClient<Channel>,
    pub(super) channel: Channel,
    token: String,
}

impl Client {
    pub async fn connect(server: &str, token: &str) -> Result<Self, ClientError> {
        Self::connect_tls(server, token, &TlsFiles::default()).await
    }

    /// Connects over TLS when `tls` names files (or the server is `https://`).
    pub async fn connect_tls(
        server: &str,
        token: &str,
        tls: &TlsFiles,
    ) -> Result<Self, ClientError> {
        let mut endpoint = Channel::from_shared(server.to_owned())
            .map_err(|e| ClientError::Usage(format!("--server {server:?}: {e}")))?;
        if let Some(config) = tls.config()? {
            endpoint = endpoint
                .tls_config(config)
                .map_err(|e| ClientError::Usage(format!("TLS: {e}")))?;
        }
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("cannot reach the sagaflow server at {server}"))?;
        Ok(Self {
            inner: WorkflowServiceClient::new(channel.clone()),
            channel,
            token: token.to_owned(),
        })
    }

    pub(super) fn req<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        if let Ok(v) = format!("Bearer {}", self.token).parse() {
            r.metadata_mut().insert("authorization", v);
        }
        r
    }

    pub fn raw(&mut self) -> &mut WorkflowServiceClient<Channel> {
        &mut self.inner
    }
}

/// Parses a JSON object given inline or as `@file`.
pub fn json_object(arg: &str, what: &str) -> Result<prost_types::Struct, ClientError> {
    let text = match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| ClientError::Usage(format!("{what}: cannot read {path}: {e}")))?,
        None => arg.to_owned(),
    };
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| ClientError::Usage(format!("{what} is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(ClientError::Usage(format!("{what} must be a JSON object")));
    }
    Ok(json::json_to_struct(&v))
}

/// The client's TLS files: the CA that signed the server's certificate, and
/// the client's own certificate and key when the server asks for one.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    pub ca_cert: Option<std::path::PathBuf>,
    pub client_cert: Option<std::path::PathBuf>,
    pub client_key: Option<std::path::PathBuf>,
}

impl TlsFiles {
    /// The tonic TLS configuration; none when no file is named.
    fn config(&self) -> Result<Option<tonic::transport::ClientTlsConfig>, ClientError> {
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};
        let read = |p: &std::path::Path, flag: &str| {
            std::fs::read(p).map_err(|e| {
                ClientError::Usage(format!("{flag}: cannot read {}: {e}", p.display()))
            })
        };
        if self.ca_cert.is_none() && self.client_cert.is_none() && self.client_key.is_none() {
            return Ok(None);
        }
        let mut config = ClientTlsConfig::new();
        if let Some(ca) = &self.ca_cert {
            config = config.ca_certificate(Certificate::from_pem(read(ca, "--ca-cert")?));
        }
        match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                config = config.identity(Identity::from_pem(
                    read(cert, "--client-cert")?,
                    read(key, "--client-key")?,
                ));
            }
            (None, None) => {}
            _ => {
                return Err(ClientError::Usage(
                    "--client-cert and --client-key go together".into(),
                ));
            }
        }
        Ok(Some(config))
    }
}
