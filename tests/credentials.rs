//! The credentials `dropctl` (and every dropline process, through the same
//! options) connects with: NATS over TLS checked against a given authority,
//! with a user and password from the URL; and no password ever shown in
//! what it prints.

use std::path::Path;
use std::process::Command;

use dropline_suite::{dropctl_at, spawn_app, PrivateNats};

/// A throwaway certificate authority and a server certificate it signed
/// for 127.0.0.1, written by the `openssl` command.
fn make_certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl (install it: apt-get install openssl)");
        assert!(output.status.success(), "openssl {args:?}: {output:?}");
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &["-keyout", "ca.key", "-out", "ca.pem"],
    ]
    .concat()
    .iter()
    .copied()
    .chain(["-subj", "/CN=dropline test CA", "-days", "2"])
    .collect::<Vec<_>>());
    run(&[
        &["req"][..],
        &ec,
        &["-keyout", "server.key", "-out", "server.csr"],
    ]
    .concat()
    .iter()
    .copied()
    .chain(["-subj", "/CN=127.0.0.1"])
    .collect::<Vec<_>>());
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("write");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropctl_speaks_tls_to_nats_with_a_password_and_checks_the_server() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().expect("a directory");
    make_certificates(dir.path());
    let at = |name: &str| dir.path().join(name).display().to_string();
    // TLS for every client but the test kit's version check, and a user.
    let config = format!(
        "tls {{ cert_file: \"{}\", key_file: \"{}\" }}\nallow_non_tls: true\n\
         authorization {{ users: [{{ user: ops, password: \"s3cret-pw\" }}] }}\n\
         no_auth_user: ops\n",
        at("server.pem"),
        at("server.key")
    );
    let nats = PrivateNats::start_with_config(config)
        .await
        .expect("a nats-server with TLS");
    let tls_url = format!("tls://ops:s3cret-pw@127.0.0.1:{}", nats.port);
    let create = |sku: &'static str, url: String, ca: Option<String>| {
        let database_url = app.database_url.clone();
        async move {
            let mut args = vec!["drop", "create", sku, "--stock", "5"];
            let ca_flag;
            if let Some(ca) = ca {
                ca_flag = ca;
                args.extend(["--nats-tls-ca", ca_flag.as_str()]);
            }
            dropctl_at(&database_url, &url, &args).await
        }
    };
    let trusted = create("tls-ok", tls_url.clone(), Some(at("ca.pem"))).await;
    assert!(
        trusted.ok,
        "TLS with the authority and the password: {trusted:#?}"
    );

    let untrusted = create("tls-unknown-ca", tls_url.clone(), None).await;
    assert!(
        !untrusted.ok,
        "a server signed by an unknown authority: {untrusted:#?}"
    );
    let wrong = format!("tls://ops:not-it@127.0.0.1:{}", nats.port);
    let refused = create("tls-wrong-password", wrong, Some(at("ca.pem"))).await;
    assert!(!refused.ok, "a wrong password: {refused:#?}");
    for run in [&untrusted, &refused] {
        let printed = format!("{}{}", run.stdout, run.stderr);
        assert!(
            !printed.contains("s3cret-pw") && !printed.contains("not-it"),
            "{printed}"
        );
        assert!(
            printed.contains("ops:***@"),
            "names the server, not the password: {printed}"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_password_is_never_printed() {
    let url = "postgres://dropline_ops:Pg-S3cret@127.0.0.1:1/dropline";
    let run = dropctl_at(url, "nats://127.0.0.1:1", &["status"]).await;
    assert!(!run.ok, "{run:#?}");
    assert!(!run.stderr.contains("Pg-S3cret"), "{run:#?}");
    assert!(run.stderr.contains("dropline_ops:***@"), "{run:#?}");
}
