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

/// Masks the host part of an IPv4 (`10.1.2.x`) or IPv6 (first two groups kept) address;
/// anything else is returned as is.
pub fn mask_ip(host: &str) -> String {
    if let Ok(v4) = host.parse::<std::net::Ipv4Addr>() {
        let o = v4.octets();
        return format!("{}.{}.{}.x", o[0], o[1], o[2]);
    }
    let inner = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(v6) = inner.parse::<std::net::Ipv6Addr>() {
        let s = v6.segments();
        return format!("[{:x}:{:x}::x]", s[0], s[1]);
    }
    host.to_owned()
}

/// A URL reduced to `scheme://host[:port]` with IP addresses masked: no user info, path or
/// query (which may carry tokens) — the form used in logs and errors.
pub fn mask_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hostport = authority.rsplit('@').next().unwrap_or("");
    let (host, port) = if hostport.starts_with('[') {
        match hostport.find(']') {
            Some(i) => (&hostport[..=i], &hostport[i + 1..]),
            None => (hostport, ""),
        }
    } else {
        match hostport.find(':') {
            Some(i) => (&hostport[..i], &hostport[i..]),
            None => (hostport, ""),
        }
    };
    format!("{scheme}://{}{port}", mask_ip(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_ips_are_masked() {
        assert_eq!(mask_ip("192.168.7.42"), "192.168.7.x");
        assert_eq!(mask_ip("hooks.example.com"), "hooks.example.com");
        assert_eq!(mask_ip("[2001:db8::1]"), "[2001:db8::x]");
        assert_eq!(mask_url("https://user:pw@10.0.0.5:8443/hook?token=abc"), "https://10.0.0.x:8443");
        assert_eq!(mask_url("https://hooks.example.com/a/b?sig=1"), "https://hooks.example.com");
        assert_eq!(mask_url("http://[::1]:9000/x"), "http://[0:0::x]:9000");
    }

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
