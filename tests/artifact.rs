//! The artifact pipeline against a real HTTP server on loopback: checksums, limits, URL policy,
//! headers from a Secret, and spool files that never outlive their use.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use axum::{
    Router,
    body::Body,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::get,
};
use otaplane::artifact::{ArtifactError, ArtifactFetcher, ArtifactPolicy, ArtifactRequest};
use sha2::{Digest, Sha256};

const FIRMWARE: &[u8] = b"firmware image 2.0.0\n";

#[derive(Clone, Default)]
struct Served {
    /// Bytes the endless route has sent so far.
    endless_bytes: Arc<AtomicU64>,
}

async fn serve() -> (SocketAddr, Served) {
    let served = Served::default();
    let app = Router::new()
        .route("/fw.bin", get(|| async { FIRMWARE }))
        .route(
            "/private.bin",
            get(|headers: HeaderMap| async move {
                match headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                {
                    Some("Bearer artifact-token") => FIRMWARE.into_response(),
                    _ => StatusCode::UNAUTHORIZED.into_response(),
                }
            }),
        )
        .route("/missing.bin", get(|| async { StatusCode::NOT_FOUND }))
        .route(
            "/busy.bin",
            get(|| async { StatusCode::SERVICE_UNAVAILABLE }),
        )
        .route(
            "/to-metadata",
            get(|| async { Redirect::temporary("http://169.254.169.254/latest/meta-data/") }),
        )
        .route(
            "/to-ftp",
            get(|| async { Redirect::temporary("ftp://example.com/fw.bin") }),
        )
        .route(
            "/moved.bin",
            get(|| async { Redirect::permanent("/fw.bin") }),
        )
        .route(
            "/endless.bin",
            get(|State(served): State<Served>| async move {
                // No Content-Length: the limit must be enforced while streaming.
                let stream = futures::stream::unfold(served, |served| async move {
                    served.endless_bytes.fetch_add(64 * 1024, Ordering::Relaxed);
                    Some((Ok::<_, std::io::Error>(vec![7u8; 64 * 1024]), served))
                });
                Response::new(Body::from_stream(stream))
            }),
        )
        .with_state(served.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, served)
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn request(url: String) -> ArtifactRequest {
    ArtifactRequest {
        url,
        expected_sha256: None,
        headers: Vec::new(),
        max_size_bytes: 1 << 20,
    }
}

fn fetcher(spool: &tempfile::TempDir) -> ArtifactFetcher {
    ArtifactFetcher::new(ArtifactPolicy {
        spool_dir: Some(spool.path().to_path_buf()),
        ..ArtifactPolicy::default()
    })
}

fn spool_files(spool: &tempfile::TempDir) -> usize {
    std::fs::read_dir(spool.path()).unwrap().count()
}

#[tokio::test]
async fn a_matching_checksum_yields_the_spooled_image() {
    let (addr, _) = serve().await;
    let spool = tempfile::tempdir().unwrap();
    let mut wanted = request(format!("http://{addr}/fw.bin"));
    wanted.expected_sha256 = Some(sha256_hex(FIRMWARE));
    let artifact = fetcher(&spool).fetch(&wanted).await.unwrap();
    assert_eq!(artifact.sha256(), sha256_hex(FIRMWARE));
    assert_eq!(artifact.size(), FIRMWARE.len() as u64);
    assert_eq!(std::fs::read(artifact.path()).unwrap(), FIRMWARE);
    drop(artifact);
    assert_eq!(
        spool_files(&spool),
        0,
        "the spool file is deleted after use"
    );
}

#[tokio::test]
async fn a_checksum_mismatch_is_terminal_and_leaves_no_spool_file() {
    let (addr, _) = serve().await;
    let spool = tempfile::tempdir().unwrap();
    let mut wanted = request(format!("http://{addr}/fw.bin"));
    wanted.expected_sha256 = Some("0".repeat(64));
    let err = fetcher(&spool).fetch(&wanted).await.unwrap_err();
    assert!(
        matches!(&err, ArtifactError::ChecksumMismatch { actual, .. } if *actual == sha256_hex(FIRMWARE)),
        "{err}"
    );
    assert!(!err.is_retryable());
    assert_eq!(err.reason(), "ChecksumMismatch");
    assert_eq!(spool_files(&spool), 0);
}

#[tokio::test]
async fn an_oversized_stream_stops_at_the_limit() {
    let (addr, served) = serve().await;
    let spool = tempfile::tempdir().unwrap();
    let mut wanted = request(format!("http://{addr}/endless.bin"));
    wanted.max_size_bytes = 1 << 20;
    let err = fetcher(&spool).fetch(&wanted).await.unwrap_err();
    assert!(
        matches!(err, ArtifactError::TooLarge { limit } if limit == 1 << 20),
        "{err}"
    );
    // The server is stopped soon after the limit: at most a few buffered chunks beyond 1 MiB.
    let sent = served.endless_bytes.load(Ordering::Relaxed);
    assert!(sent < 8 << 20, "the fetch kept reading: {sent} bytes sent");
    assert_eq!(spool_files(&spool), 0);
}

#[tokio::test]
async fn headers_from_the_secret_reach_a_private_server() {
    let (addr, _) = serve().await;
    let spool = tempfile::tempdir().unwrap();
    let fetcher = fetcher(&spool);
    let mut wanted = request(format!("http://{addr}/private.bin"));
    let err = fetcher.fetch(&wanted).await.unwrap_err();
    assert!(
        matches!(err, ArtifactError::Status { status: 401, .. }),
        "{err}"
    );
    assert!(!err.is_retryable());
    wanted.headers = vec![("Authorization".into(), "Bearer artifact-token".into())];
    let artifact = fetcher.fetch(&wanted).await.unwrap();
    assert_eq!(artifact.size(), FIRMWARE.len() as u64);
}

#[tokio::test]
async fn server_errors_are_retryable_and_not_found_is_not() {
    let (addr, _) = serve().await;
    let spool = tempfile::tempdir().unwrap();
    let fetcher = fetcher(&spool);
    let busy = fetcher
        .fetch(&request(format!("http://{addr}/busy.bin")))
        .await
        .unwrap_err();
    assert!(busy.is_retryable(), "{busy}");
    let missing = fetcher
        .fetch(&request(format!("http://{addr}/missing.bin")))
        .await
        .unwrap_err();
    assert!(!missing.is_retryable(), "{missing}");
    assert!(missing.to_string().contains("404"), "{missing}");
}

#[tokio::test]
async fn redirects_are_followed_but_not_to_metadata_or_other_schemes() {
    let (addr, _) = serve().await;
    let spool = tempfile::tempdir().unwrap();
    let fetcher = fetcher(&spool);
    let moved = fetcher
        .fetch(&request(format!("http://{addr}/moved.bin")))
        .await
        .unwrap();
    assert_eq!(moved.size(), FIRMWARE.len() as u64);

    let metadata = fetcher
        .fetch(&request(format!("http://{addr}/to-metadata")))
        .await
        .unwrap_err();
    assert!(
        matches!(metadata, ArtifactError::AddressNotAllowed { .. }),
        "{metadata}"
    );
    assert!(!metadata.is_retryable());

    let ftp = fetcher
        .fetch(&request(format!("http://{addr}/to-ftp")))
        .await
        .unwrap_err();
    assert!(
        matches!(&ftp, ArtifactError::SchemeNotAllowed { scheme } if scheme == "ftp"),
        "{ftp}"
    );
}

#[tokio::test]
async fn denied_urls_are_refused_before_connecting() {
    let spool = tempfile::tempdir().unwrap();
    let fetcher = fetcher(&spool);
    let err = fetcher
        .fetch(&request("http://169.254.169.254/latest/meta-data/".into()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ArtifactError::AddressNotAllowed { .. }),
        "{err}"
    );
    let err = fetcher
        .fetch(&request("file:///etc/passwd".into()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ArtifactError::SchemeNotAllowed { .. }),
        "{err}"
    );
    let err = fetcher
        .fetch(&request("http://[fd00:ec2::254]/".into()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ArtifactError::AddressNotAllowed { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn errors_never_show_url_credentials() {
    let spool = tempfile::tempdir().unwrap();
    // Port 9 on loopback: nothing listens, the connection is refused.
    let err = fetcher(&spool)
        .fetch(&request(
            "http://user:hunter2@127.0.0.1:9/fw.bin?token=abc".into(),
        ))
        .await
        .unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(err.is_retryable(), "{err}");
    assert!(
        !shown.contains("hunter2") && !shown.contains("token=abc"),
        "{shown}"
    );
}
