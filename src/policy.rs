//! HIPAA workspace rules, applied before anything starts. Pure functions: no I/O.

/// Outputs that HIPAA workspaces disable.
pub const HIPAA_DISABLED_OUTPUTS: [&str; 5] = ["hls", "rtmp", "track_recording", "stream_recording", "transcription"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("hipaa enabled: recording config is not provided")]
    NoDestination,
    #[error("hipaa enabled: local folder destinations (file://) are not allowed; record into the customer's bucket")]
    LocalDestination,
    #[error("hipaa enabled: the webhook url must use https://")]
    WebhookNotHttps,
    #[error("hipaa enabled: the `{0}` output is disabled in HIPAA workspaces")]
    DisabledOutput(String),
}

/// What a recording asks for, as far as the policy cares.
#[derive(Debug, Clone, Default)]
pub struct Request<'a> {
    pub hipaa: bool,
    pub destination: Option<&'a str>,
    pub webhook_url: Option<&'a str>,
    pub outputs: &'a [String],
}

pub fn check(r: &Request<'_>) -> Result<(), PolicyError> {
    if !r.hipaa {
        return Ok(());
    }
    let dest = r.destination.map(str::trim).filter(|d| !d.is_empty()).ok_or(PolicyError::NoDestination)?;
    if dest.to_ascii_lowercase().starts_with("file:") {
        return Err(PolicyError::LocalDestination);
    }
    if let Some(url) = r.webhook_url {
        if !url.trim().to_ascii_lowercase().starts_with("https://") {
            return Err(PolicyError::WebhookNotHttps);
        }
    }
    if let Some(o) = r.outputs.iter().find(|o| HIPAA_DISABLED_OUTPUTS.contains(&o.to_ascii_lowercase().as_str())) {
        return Err(PolicyError::DisabledOutput(o.to_ascii_lowercase()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(dest: Option<&'a str>, hook: Option<&'a str>, outputs: &'a [String]) -> Request<'a> {
        Request { hipaa: true, destination: dest, webhook_url: hook, outputs }
    }

    #[test]
    fn hipaa_refusals_have_exact_messages() {
        assert_eq!(check(&req(None, None, &[])).unwrap_err().to_string(), "hipaa enabled: recording config is not provided");
        assert_eq!(check(&req(Some("  "), None, &[])).unwrap_err(), PolicyError::NoDestination);
        assert_eq!(check(&req(Some("file:///tmp/x"), None, &[])).unwrap_err(), PolicyError::LocalDestination);
        assert_eq!(check(&req(Some("s3://b/p"), Some("http://hooks.example.com"), &[])).unwrap_err(), PolicyError::WebhookNotHttps);
        for o in HIPAA_DISABLED_OUTPUTS {
            let outs = vec!["composite".to_string(), o.to_uppercase()];
            assert_eq!(check(&req(Some("s3://b/p"), None, &outs)).unwrap_err().to_string(), format!("hipaa enabled: the `{o}` output is disabled in HIPAA workspaces"));
        }
    }

    #[test]
    fn allowed_requests_pass() {
        assert!(check(&req(Some("s3://b/p"), Some("https://hooks.example.com"), &["composite".into()])).is_ok());
        let open = Request { hipaa: false, destination: None, webhook_url: Some("http://x"), outputs: &[] };
        assert!(check(&open).is_ok());
    }
}
