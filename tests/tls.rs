//! gRPC over TLS, with and without client-certificate verification. The
//! certificates are made for the test with the `openssl` command.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use sagaflow::config::TlsConfig;
use sagaflow_proto::v1 as pb;
use sagaflow_proto::v1::workflow_service_client::WorkflowServiceClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for `localhost` and a client certificate.
fn certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        dir,
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "1",
                "-subj",
                "/CN=sagaflow test CA",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("client.ext"),
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    for (name, ext) in [
        ("server", Some("server.ext")),
        ("client", Some("client.ext")),
    ] {
        let (key, csr, pem) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        openssl(
            dir,
            &[
                &["req"][..],
                &ec,
                &[
                    "-keyout",
                    &key,
                    "-out",
                    &csr,
                    "-subj",
                    &format!("/CN={name}"),
                ],
            ]
            .concat(),
        );
        let mut sign = vec![
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "1",
        ];
        if let Some(e) = ext {
            sign.extend(["-extfile", e]);
        }
        openssl(dir, &sign);
    }
}

async fn call(channel: Channel) -> Result<(), tonic::Status> {
    WorkflowServiceClient::new(channel)
        .list_workflow_definitions(req(pb::ListWorkflowDefinitionsRequest {}, "crm-a"))
        .await
        .map(|_| ())
}

async fn tls_channel(
    addr: std::net::SocketAddr,
    dir: &Path,
    with_client_cert: bool,
) -> Result<Channel, tonic::transport::Error> {
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("ca.pem")))
        .domain_name("localhost");
    if with_client_cert {
        tls = tls.identity(Identity::from_pem(read("client.pem"), read("client.key")));
    }
    Channel::from_shared(format!("https://localhost:{}", addr.port()))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn grpc_over_tls_with_and_without_client_certificates(pool: sqlx::PgPool) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certs = tempfile::tempdir().unwrap();
    certificates(certs.path());
    let tls = |client_ca: bool| TlsConfig {
        cert: certs.path().join("server.pem"),
        key: certs.path().join("server.key"),
        client_ca: client_ca.then(|| certs.path().join("ca.pem")),
    };

    // Server certificate only.
    let t = start_with_tls(&pool, Some(tls(false))).await;
    let addr = t.server.grpc_addr;
    call(tls_channel(addr, certs.path(), false).await.unwrap())
        .await
        .unwrap();
    let plain = Channel::from_shared(format!("http://127.0.0.1:{}", addr.port()))
        .unwrap()
        .connect()
        .await;
    let refused = match plain {
        Err(_) => true,
        Ok(ch) => call(ch).await.is_err(),
    };
    assert!(refused, "a plaintext client is not served");
    t.server.shutdown().await;

    // Client certificates required.
    let t = start_with_tls(&pool, Some(tls(true))).await;
    let addr = t.server.grpc_addr;
    call(tls_channel(addr, certs.path(), true).await.unwrap())
        .await
        .unwrap();
    let without = match tls_channel(addr, certs.path(), false).await {
        Err(_) => true,
        Ok(ch) => call(ch).await.is_err(),
    };
    assert!(without, "a client without a certificate is refused");
    t.server.shutdown().await;
}

async fn start_with_tls(pool: &sqlx::PgPool, tls: Option<TlsConfig>) -> TestServer {
    start_with(pool, &[("demo.toml", DEMO.to_string())], move |c| {
        c.grpc.tls = tls
    })
    .await
}
