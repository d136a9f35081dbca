//! Real S3 servers for the upload tests, started on loopback by the repo's scripts and
//! stopped when the handle drops.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use crate::common::repo;

/// A free loopback port with `extra` free ports after it (Garage uses three).
pub fn free_ports(extra: u16) -> u16 {
    for _ in 0..200 {
        let p = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if p > 60000 {
            continue;
        }
        if (1..=extra).all(|i| std::net::TcpListener::bind(("127.0.0.1", p + i)).is_ok()) {
            return p;
        }
    }
    panic!("no free ports");
}

fn parse_env(out: &str) -> HashMap<String, String> {
    out.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

fn kill_group(pid: &str) {
    if let Ok(pid) = pid.parse::<i32>() {
        // The servers run in their own session (setsid): stop the whole group.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
            libc::kill(pid, libc::SIGKILL);
        }
        let _ = Command::new("sh").arg("-c").arg(format!("while kill -0 {pid} 2>/dev/null; do sleep 0.05; done")).status();
    }
}

/// S3 connection settings for one set of credentials.
#[derive(Clone)]
pub struct S3Access {
    pub endpoint: String,
    pub region: String,
    pub key_id: String,
    pub secret: String,
}

impl S3Access {
    /// The environment veil reads.
    pub fn apply(&self, c: &mut Command) {
        c.env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_REGION", &self.region)
            .env("AWS_ACCESS_KEY_ID", &self.key_id)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret)
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_S3_FORCE_PATH_STYLE");
    }

    fn client(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new(self.region.clone()))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(&self.key_id, &self.secret, None, None, "test"))
            .endpoint_url(&self.endpoint)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    /// Downloads an object (the test's own reader credentials).
    pub fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        let c = self.client();
        Self::rt().block_on(async {
            let o = c.get_object().bucket(bucket).key(key).send().await.unwrap_or_else(|e| panic!("get {key}: {e:?}"));
            o.body.collect().await.unwrap().into_bytes().to_vec()
        })
    }

    /// Keys under `prefix`.
    pub fn list(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let c = self.client();
        Self::rt().block_on(async {
            let o = c.list_objects_v2().bucket(bucket).prefix(prefix).send().await.unwrap();
            o.contents().iter().filter_map(|o| o.key().map(str::to_owned)).collect()
        })
    }

    /// Multipart uploads still open under `prefix`.
    pub fn open_uploads(&self, bucket: &str, prefix: &str) -> usize {
        let c = self.client();
        Self::rt().block_on(async {
            let o = c.list_multipart_uploads().bucket(bucket).prefix(prefix).send().await.unwrap();
            o.uploads().len()
        })
    }
}

/// A single-node Garage with a write-only key for veil.
pub struct Garage {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub bucket: String,
    pub writer: S3Access,
    /// Read and write on the bucket: for fetching results and as a "too powerful" key.
    pub reader: S3Access,
    /// A valid key with no permission on the bucket.
    pub nobody: S3Access,
    pid: String,
    bind: String,
}

impl Garage {
    pub fn start() -> Self {
        Self::start_on("127.0.0.1")
    }

    /// Garage whose S3 API listens on `ip` (a local address: loopback, or the host side of a
    /// test namespace's veth pair).
    pub fn start_on(ip: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_ports(2);
        let o = Command::new("bash")
            .arg(repo().join("tests/support/garage.sh"))
            .arg(dir.path())
            .arg(port.to_string())
            .env("GARAGE_BIND", ip)
            .output()
            .unwrap();
        assert!(o.status.success(), "garage.sh failed: {}", String::from_utf8_lossy(&o.stderr));
        let env = parse_env(&String::from_utf8_lossy(&o.stdout));
        let access = |id: &str, secret: &str| S3Access {
            endpoint: env["GARAGE_ENDPOINT"].clone(),
            region: env["GARAGE_REGION"].clone(),
            key_id: env[id].clone(),
            secret: env[secret].clone(),
        };
        Self {
            port,
            bucket: env["GARAGE_BUCKET"].clone(),
            writer: access("WRITER_KEY_ID", "WRITER_SECRET"),
            reader: access("READER_KEY_ID", "READER_SECRET"),
            nobody: access("NONE_KEY_ID", "NONE_SECRET"),
            pid: env["GARAGE_PID"].clone(),
            bind: ip.to_owned(),
            dir,
        }
    }

    /// Stops the server; its data stays for `restart`.
    pub fn stop(&mut self) {
        kill_group(&self.pid);
    }

    pub fn restart(&mut self) {
        let o = Command::new("bash")
            .arg(repo().join("tests/support/garage.sh"))
            .arg(self.dir.path())
            .arg(self.port.to_string())
            .env("GARAGE_BIND", &self.bind)
            .output()
            .unwrap();
        assert!(o.status.success(), "garage.sh restart failed: {}", String::from_utf8_lossy(&o.stderr));
        self.pid = parse_env(&String::from_utf8_lossy(&o.stdout))["GARAGE_PID"].clone();
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        kill_group(&self.pid);
    }
}

/// moto's S3 with IAM enforced and a user allowed only s3:PutObject/s3:AbortMultipartUpload.
pub struct Moto {
    pub dir: tempfile::TempDir,
    pub bucket: String,
    pub writer: S3Access,
    pub reader: S3Access,
    pid: String,
}

impl Moto {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_ports(0);
        let o = Command::new("python3").arg(repo().join("tests/support/moto_s3.py")).arg(dir.path()).arg(port.to_string()).output().unwrap();
        assert!(o.status.success(), "moto_s3.py failed: {}", String::from_utf8_lossy(&o.stderr));
        let env = parse_env(&String::from_utf8_lossy(&o.stdout));
        let access = |id: &str, secret: &str| S3Access {
            endpoint: env["MOTO_ENDPOINT"].clone(),
            region: "us-east-1".into(),
            key_id: env[id].clone(),
            secret: env[secret].clone(),
        };
        Self {
            bucket: env["MOTO_BUCKET"].clone(),
            writer: access("WRITER_KEY_ID", "WRITER_SECRET"),
            reader: access("READER_KEY_ID", "READER_SECRET"),
            pid: env["MOTO_PID"].clone(),
            dir,
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        kill_group(&self.pid);
    }
}

pub fn write_temp(bytes: &[u8], name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    (d, p)
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}

/// Azurite's blob service (in memory) with container SAS tokens.
pub struct Azurite {
    pub dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT/devstoreaccount1`
    pub base: String,
    pub container: String,
    /// sp=cw: what veil gets.
    pub writer_sas: String,
    /// sp=rl: for the test to fetch what landed.
    pub reader_sas: String,
    /// Every permission: the "too powerful" credentials.
    pub all_sas: String,
    pid: String,
}

impl Azurite {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_ports(0);
        let o = Command::new("python3").arg(repo().join("tests/support/azurite.py")).arg(dir.path()).arg(port.to_string()).output().unwrap();
        assert!(o.status.success(), "azurite.py failed: {}", String::from_utf8_lossy(&o.stderr));
        let env = parse_env(&String::from_utf8_lossy(&o.stdout));
        Self {
            base: env["AZURE_BASE"].clone(),
            container: env["AZURE_CONTAINER"].clone(),
            writer_sas: env["WRITER_SAS"].clone(),
            reader_sas: env["READER_SAS"].clone(),
            all_sas: env["ALL_SAS"].clone(),
            pid: env["AZURITE_PID"].clone(),
            dir,
        }
    }

    /// The destination URL for `prefix` with the given SAS.
    pub fn dest(&self, prefix: &str, sas: &str) -> String {
        format!("{}/{}/{prefix}?{sas}", self.base, self.container)
    }

    /// Method and path of every request Azurite logged (its debug log).
    pub fn requests(&self) -> Vec<(String, String)> {
        let log = std::fs::read_to_string(self.dir.path().join("debug.log")).unwrap_or_default();
        log.split("RequestMethod=")
            .skip(1)
            .filter_map(|r| {
                let (method, rest) = r.split_once(' ')?;
                let url = rest.strip_prefix("RequestURL=")?.split([' ', '?']).next()?;
                Some((method.to_owned(), url.to_owned()))
            })
            .collect()
    }

    /// Downloads a blob with the read SAS.
    pub fn get(&self, key: &str) -> Vec<u8> {
        let url = format!("{}/{}/{key}?{}", self.base, self.container, self.reader_sas);
        let mut r = ureq::get(&url).call().unwrap_or_else(|e| panic!("get {key}: {e}"));
        r.body_mut().with_config().limit(1 << 30).read_to_vec().unwrap()
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        kill_group(&self.pid);
    }
}

/// A profile that makes the 12 s demo about 20 MB, so that small parts give several parts.
pub const BIG_PROFILE: &str = r#"description = "test: high bitrate"
video = 'x264enc speed-preset=ultrafast bitrate=14000 pass=cbr option-string="nal-hrd=cbr" key-int-max=30 ! video/x-h264,profile=high ! h264parse'
audio = "audioconvert ! avenc_aac bitrate=128000 ! aacparse"
mux = "mp4mux fragment-duration=1000 streamable=true"
extension = "mp4"
content_type = "video/mp4"
"#;

/// Writes [`BIG_PROFILE`] to a temporary file.
pub fn big_profile() -> (tempfile::TempDir, std::path::PathBuf) {
    write_temp(BIG_PROFILE.as_bytes(), "big.toml")
}

pub fn sha256_hex(b: &[u8]) -> String {
    use std::fmt::Write;
    ring::digest::digest(&ring::digest::SHA256, b).as_ref().iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

/// Files left in a spill folder.
pub fn spill_files(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir).map(|r| r.flatten().map(|e| e.path()).collect()).unwrap_or_default()
}

/// gcp-storage-emulator (in memory) on its own loopback address at port 80: the client
/// library's Host header omits the port, and the emulator builds resumable session URLs
/// from it.
pub struct GcsEmulator {
    pub host: String,
    pub bucket: String,
    pub log: std::path::PathBuf,
    _dir: tempfile::TempDir,
    child: std::process::Child,
}

impl GcsEmulator {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("gcs.log");
        let host = (2..250u32)
            .map(|_| {
                let mut b = [0u8; 1];
                let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b));
                format!("127.0.{}.{}", 1 + b[0] % 200, 2 + b[0] % 250)
            })
            .find(|h| std::net::TcpListener::bind((h.as_str(), 80)).is_ok())
            .expect("a free loopback address with port 80");
        let mut child = Command::new("gcp-storage-emulator")
            .args(["start", "-H", &host, "--port", "80", "--default-bucket", "rec", "--in-memory"])
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::process::Stdio::from(std::fs::OpenOptions::new().append(true).open(&log).unwrap()))
            .spawn()
            .expect("gcp-storage-emulator (pip install gcp-storage-emulator)");
        for _ in 0..200 {
            if std::fs::read_to_string(&log).unwrap_or_default().contains("All services started") {
                return Self { host, bucket: "rec".into(), log, _dir: dir, child };
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("gcp-storage-emulator did not start: {}", std::fs::read_to_string(&log).unwrap_or_default());
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}:80", self.host)
    }

    /// The request lines the emulator logged (method and path).
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log).unwrap_or_default().lines().filter(|l| l.starts_with('"')).map(str::to_owned).collect()
    }

    pub fn get(&self, key: &str) -> Vec<u8> {
        let enc: String = key.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect();
        let url = format!("http://{}/download/storage/v1/b/{}/o/{enc}?alt=media", self.host, self.bucket);
        let mut r = ureq::get(&url).call().unwrap_or_else(|e| panic!("get {key}: {e}"));
        r.body_mut().with_config().limit(1 << 30).read_to_vec().unwrap()
    }
}

impl Drop for GcsEmulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
