//! Values that must never reach a log line, an error message or a panic: names, chat text,
//! secrets. [`Redacted`] prints as `<redacted>` on `Debug` and `Display` and zeroizes its
//! contents on drop; the raw value is reachable only through [`Redacted::expose`], so every
//! place that needs it is easy to find.

use zeroize::Zeroize;

#[derive(Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Redacted<T: Zeroize>(T);

impl<T: Zeroize> Redacted<T> {
    pub fn new(v: T) -> Self {
        Self(v)
    }
    /// The raw value. Call sites are the audit list of where sensitive data flows.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T: Zeroize> Drop for Redacted<T> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<T: Zeroize> std::fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<T: Zeroize> std::fmt::Display for Redacted<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Lowercase hex SHA-256, the one-way form of names used wherever veil itself keeps or sends them.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_never_prints() {
        let r = Redacted::new(String::from("Dr. Secret"));
        assert_eq!(format!("{r:?} {r}"), "<redacted> <redacted>");
        assert_eq!(r.expose(), "Dr. Secret");
        let parsed: Redacted<String> = serde_json::from_str("\"x\"").unwrap();
        assert_eq!(parsed.expose(), "x");
    }

    #[test]
    fn sha256_hex_known_vector() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
