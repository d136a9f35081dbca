//! A private Janus in a network namespace (tests/support/janus-netns.sh), stopped on drop.
#![allow(dead_code)]

use std::collections::HashMap;
use std::process::Command;

use crate::common::repo;

pub struct Janus {
    pub dir: tempfile::TempDir,
    pub netns: String,
    pub url: String,
    pub ip: String,
}

impl Janus {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let script = repo().join("tests/support/janus-netns.sh");
        // Pick a free slot: the namespace name must not exist yet.
        let existing = String::from_utf8_lossy(&Command::new("ip").args(["netns", "list"]).output().unwrap().stdout).into_owned();
        let n = (0..200u32)
            .map(|i| 2 + (std::process::id() + i * 7) % 248)
            .find(|n| !existing.contains(&format!("veil-j{n} ")) && !existing.lines().any(|l| l.split_whitespace().next() == Some(&format!("veil-j{n}"))))
            .expect("a free namespace slot");
        let o = Command::new("bash").arg(&script).arg("start").arg(dir.path()).arg(n.to_string()).output().unwrap();
        assert!(o.status.success(), "janus-netns.sh failed: {}", String::from_utf8_lossy(&o.stderr));
        let env: HashMap<String, String> =
            String::from_utf8_lossy(&o.stdout).lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        Self { netns: env["JANUS_NETNS"].clone(), url: env["JANUS_URL"].clone(), ip: env["JANUS_IP"].clone(), dir }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("janus.log")).unwrap_or_default()
    }
}

impl Drop for Janus {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(repo().join("tests/support/janus-netns.sh")).arg("stop").arg(self.dir.path()).status();
    }
}
