//! An S3 API server for tests: moto's server mode (PyPI), on loopback.

use std::process::{Child, Command, Stdio};

use super::wait_port;

/// A moto S3 server on a loopback port, stopped when dropped.
pub struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    /// Starts `moto_server` on `port`; `None` if moto is not installed
    /// (CI installs it and sets FORTRESS_REQUIRE_MOTO=1).
    pub fn start(port: u16) -> Option<Moto> {
        let spawned = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(c) => c,
            Err(e) => {
                assert!(
                    std::env::var("FORTRESS_REQUIRE_MOTO").is_err(),
                    "moto_server is required: {e}"
                );
                eprintln!("skipping: moto_server is not installed ({e})");
                return None;
            }
        };
        let moto = Moto { child, port };
        wait_port(port, "moto");
        Some(moto)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    /// moto checks no signature, only who a request says it is from (an
    /// anonymous one may not read): plain HTTP makes buckets and edits
    /// objects.
    pub const AUTH: &'static str = "AWS4-HMAC-SHA256 Credential=testing/20261207/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0";

    pub fn put(&self, path: &str, body: &[u8]) {
        let status = ureq::put(&self.url(path))
            .header("Authorization", Self::AUTH)
            .header("Content-Type", "application/octet-stream")
            .send(body)
            .unwrap()
            .status();
        assert!(status.is_success(), "PUT {path}: {status}");
    }

    pub fn get(&self, path: &str) -> Vec<u8> {
        ureq::get(&self.url(path))
            .header("Authorization", Self::AUTH)
            .call()
            .unwrap()
            .body_mut()
            .read_to_vec()
            .unwrap()
    }

    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let xml =
            String::from_utf8(self.get(&format!("{bucket}?list-type=2&prefix={prefix}"))).unwrap();
        xml.split("<Key>")
            .skip(1)
            .filter_map(|k| k.split("</Key>").next())
            .map(String::from)
            .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn s3_env(port: u16) -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}")),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_REGION", "us-east-1".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}
