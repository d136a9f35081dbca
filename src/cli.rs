//! The command line. `anyhow` lives here and in `main.rs` only.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use veil::compose::layout::LayoutMode;
use veil::notify::Webhooks;
use veil::recording::{self, ReprocessOptions};
use veil::upload::Destination;
use veil::webhook::{self, Outbox, WebhookConfig};

#[derive(Parser)]
#[command(name = "veil", version, about = "Recording worker: composite, encrypt, stream to the customer's bucket")]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Re-composite a recorded session folder into one MP4 and a chat CSV.
    Reprocess(ReprocessArgs),
    /// Deliver the webhooks still pending in the outbox (left by an interrupted run).
    WebhookDeliver(DeliverArgs),
    /// Check a destination: a probe write must succeed; a read, a head and a list must fail.
    VerifyBucket(VerifyArgs),
    /// Run a job document (docs/jobs.md): the session, destination, webhook and workspace
    /// settings all come from the JSON file.
    Record(RecordArgs),
}

#[derive(clap::Args)]
pub struct RecordArgs {
    /// The job document (JSON).
    pub job: PathBuf,
    /// Where the encrypted spill lives [default: $VEIL_SPILL_DIR or a private temp folder].
    #[arg(long)]
    pub spill_dir: Option<PathBuf>,
    /// Durable webhook outbox [default: $VEIL_STATE_DIR/outbox, else ~/.local/state/veil/outbox].
    #[arg(long)]
    pub outbox_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// Destination URL, e.g. s3://bucket/prefix (credentials from the environment).
    pub dest: String,
    /// Refuse credentials that can read, head or list (HIPAA workspaces need write-only).
    #[arg(long)]
    pub hipaa: bool,
    /// Print the result as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args)]
pub struct WebhookArgs {
    /// Receiver of signed webhooks (recording.started / .success / .failed).
    #[arg(long)]
    pub webhook_url: Option<String>,
    /// File holding the HMAC-SHA256 secret that signs webhooks (x-veil-signature).
    #[arg(long)]
    pub webhook_secret_file: Option<PathBuf>,
    /// Extra trusted root certificate (PEM) for the receiver; when given, only it is trusted.
    #[arg(long)]
    pub webhook_ca: Option<PathBuf>,
    /// Extra header sent with every webhook, `Name: value` (repeatable; values are never logged).
    #[arg(long = "webhook-header")]
    pub webhook_headers: Vec<String>,
    /// Attempts per event before it is abandoned (moved to the outbox's dead/ folder).
    #[arg(long, default_value_t = 8)]
    pub webhook_max_attempts: u32,
    /// Seconds to wait at the end of a run for webhooks to be delivered; the rest stays queued.
    #[arg(long, default_value_t = 120)]
    pub webhook_wait_s: u64,
    /// Durable webhook outbox [default: $VEIL_STATE_DIR/outbox, else ~/.local/state/veil/outbox].
    #[arg(long)]
    pub outbox_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct DeliverArgs {
    #[command(flatten)]
    pub webhook: WebhookArgs,
}

#[derive(clap::Args)]
pub struct ReprocessArgs {
    /// Session folder holding session.json, the track files and the chat log.
    pub session_dir: PathBuf,
    /// Destination URL: s3://bucket/prefix (credentials from the AWS environment) or
    /// file:///abs/dir.
    #[arg(long)]
    pub dest: Option<String>,
    /// Upload part size in MiB (S3: at least 5).
    #[arg(long, default_value_t = 8)]
    pub part_size_mib: usize,
    /// Seconds the destination may keep failing before the recording is given up and its
    /// encrypted spill shredded.
    #[arg(long, default_value_t = 3600)]
    pub upload_retention_s: u64,
    #[arg(long, value_enum, default_value_t = LayoutMode::Auto)]
    pub layout: LayoutMode,
    /// Encoder/muxer profile: a name from pipelines/ or a path to a .toml file.
    #[arg(long, default_value = "default")]
    pub profile: String,
    /// Where the encrypted spill lives [default: $VEIL_SPILL_DIR or a private temp folder].
    #[arg(long)]
    pub spill_dir: Option<PathBuf>,
    /// Leave the chat out (no panel, no CSV).
    #[arg(long)]
    pub no_chat: bool,
    /// Include direct messages in the panel and the CSV.
    #[arg(long)]
    pub include_direct: bool,
    /// HIPAA workspace: customer bucket required, https webhooks only, names hashed.
    #[arg(long)]
    pub hipaa: bool,
    #[command(flatten)]
    pub webhook: WebhookArgs,
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    init_logging(cli.log_format);
    match cli.command {
        Command::Reprocess(a) => reprocess(a),
        Command::WebhookDeliver(a) => deliver(a),
        Command::VerifyBucket(a) => verify_bucket(a),
        Command::Record(a) => record(a),
    }
}

/// The worker-wide HIPAA switch: `VEIL_FORCE_HIPAA=1` (or `true`) makes every command run in
/// HIPAA workspace mode whatever the flags or the job say.
fn forced_hipaa() -> bool {
    std::env::var("VEIL_FORCE_HIPAA").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

fn process_env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

fn record(a: RecordArgs) -> anyhow::Result<()> {
    use veil::job::{Job, SessionSpec, SUPPORTED_OUTPUTS};
    let file = a.job.display().to_string();
    let bytes = std::fs::read(&a.job).map_err(|e| veil::job::JobError::Read { file: file.clone(), message: e.to_string() })?;
    let job = Job::parse(&bytes, &file)?;
    let hipaa = job.workspace.hipaa || forced_hipaa();
    veil::policy::check(&veil::policy::Request {
        hipaa,
        destination: job.destination.as_ref().map(|d| d.url.expose().as_str()),
        webhook_url: job.webhook.as_ref().map(|w| w.url.as_str()),
        outputs: &job.outputs,
    })?;
    if let Some(o) = job.outputs.iter().find(|o| !SUPPORTED_OUTPUTS.contains(&o.as_str())) {
        anyhow::bail!("job {file}: `outputs`: `{o}` is not an output this version makes (it makes: {})", SUPPORTED_OUTPUTS.join(", "));
    }
    let mut destination = job.destination(&file, &process_env).ok_or_else(|| anyhow::anyhow!("job {file}: `destination` is required"))??;
    destination.set_part_size(job.upload.part_size_mib.unwrap_or(8).saturating_mul(1 << 20));
    let webhooks = match &job.webhook {
        None => None,
        Some(w) => {
            webhook::validate_url(&w.url).with_context(|| format!("job {file}: `webhook.url`"))?;
            let mut config = WebhookConfig::new(w.secret.expose().as_bytes().to_vec());
            for (name, value) in &w.headers {
                config.add_header(&format!("{name}: {}", value.expose())).with_context(|| format!("job {file}: `webhook.headers`"))?;
            }
            if let Some(pem) = &w.ca_pem {
                config.set_ca(pem.as_bytes()).with_context(|| format!("job {file}: `webhook.ca_pem`"))?;
            }
            Some(Webhooks {
                url: w.url.clone(),
                config,
                outbox: Outbox::open(&a.outbox_dir.clone().unwrap_or_else(default_outbox))?,
                wait: std::time::Duration::from_secs(120),
            })
        }
    };
    let signals = cancel_on_signals();
    let opts = ReprocessOptions {
        webhooks,
        destination,
        layout: job.layout,
        profile: job.profile.clone(),
        spill_dir: a.spill_dir.unwrap_or_else(recording::default_spill_dir),
        chat: job.chat.record && job.outputs.iter().any(|o| o == "chat"),
        include_direct: job.chat.include_direct,
        retry: veil::upload::stream::RetryPolicy {
            retention: std::time::Duration::from_secs(job.upload.retention_s.unwrap_or(3600)),
            ..Default::default()
        },
        cancel: signals.clone(),
    };
    let result = match &job.session {
        SessionSpec::Files(f) if !f.live => recording::reprocess(&f.dir, &opts, |_, _| {}),
        session => {
            let source = match session {
                SessionSpec::Files(f) => veil::live::LiveSourceSpec::Replay { dir: f.dir.clone() },
                SessionSpec::Janus(j) => veil::live::LiveSourceSpec::Janus { url: j.url.clone(), room: j.room, pin: j.pin.clone() },
            };
            // For a live session a signal means "stop and deliver", not "cancel".
            let live = veil::live::LiveOptions {
                source,
                max_duration: std::time::Duration::from_secs(job.limits.max_duration_s),
                empty_timeout: std::time::Duration::from_secs(job.limits.empty_timeout_s),
                stop: signals,
            };
            let opts = ReprocessOptions { cancel: Arc::new(AtomicBool::new(false)), ..opts };
            veil::live::record(&live, &opts)
        }
    };

    if matches!(result, Err(recording::RecordingError::Cancelled)) {
        return Err(Cancelled.into());
    }
    let result = result.with_context(|| format!("job {}", job.id))?;
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}

/// Set by SIGINT/SIGTERM; copied into the recording's cancel flag.
static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.store(true, Ordering::SeqCst);
}

/// Ctrl-C or SIGTERM cancels: the pipeline stops, the upload is aborted, the spill shredded.
fn cancel_on_signals() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let f = flag.clone();
    std::thread::spawn(move || loop {
        if SIGNALLED.load(Ordering::SeqCst) {
            f.store(true, Ordering::SeqCst);
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    });
    flag
}

/// Exit status for a cancelled run (128 + SIGINT, as shells report it).
pub const EXIT_CANCELLED: i32 = 130;

#[derive(Debug, thiserror::Error)]
#[error("cancelled: nothing was delivered; the partial upload was aborted and the spill shredded")]
pub struct Cancelled;

fn verify_bucket(a: VerifyArgs) -> anyhow::Result<()> {
    let dest = Destination::parse(&a.dest)?;
    let verdict = veil::upload::verify::verify(&dest)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&verdict)?);
    } else {
        print!("{}", verdict.table());
    }
    if (a.hipaa || forced_hipaa()) && !verdict.write_only {
        let allowed: Vec<_> = verdict.checks.iter().filter(|c| c.allowed && c.operation != "write").map(|c| c.operation).collect();
        anyhow::bail!(
            "hipaa enabled: the credentials for {} can {} objects; a HIPAA workspace needs write-only credentials",
            verdict.destination,
            allowed.join(", ")
        );
    }
    Ok(())
}

fn init_logging(format: LogFormat) {
    // Default: veil's own warnings and errors only. Dependencies' debug logs may print request
    // details, so enabling them is an explicit choice (VEIL_LOG=...).
    let filter = tracing_subscriber::EnvFilter::try_from_env("VEIL_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("veil=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

fn default_outbox() -> PathBuf {
    if let Some(d) = std::env::var_os("VEIL_STATE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("outbox");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    home.join(".local/state/veil/outbox")
}

/// Secret, CA, headers and limits from the flags (the URL is checked separately).
fn webhook_config(w: &WebhookArgs) -> anyhow::Result<WebhookConfig> {
    let path = w.webhook_secret_file.as_ref().ok_or_else(|| anyhow::anyhow!("--webhook-secret-file is required with webhooks"))?;
    let mut cfg = WebhookConfig::new(WebhookConfig::read_secret(path)?);
    if let Some(ca) = &w.webhook_ca {
        cfg.read_ca(ca)?;
    }
    for h in &w.webhook_headers {
        cfg.add_header(h)?;
    }
    cfg.max_attempts = w.webhook_max_attempts.max(1);
    Ok(cfg)
}

fn deliver(a: DeliverArgs) -> anyhow::Result<()> {
    let cfg = webhook_config(&a.webhook)?;
    let outbox = Outbox::open(&a.webhook.outbox_dir.clone().unwrap_or_else(default_outbox))?;
    let deadline = Instant::now() + std::time::Duration::from_secs(a.webhook.webhook_wait_s);
    let report = webhook::deliver(&outbox, &cfg, None, deadline, &std::sync::atomic::AtomicBool::new(false))?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    if report.pending > 0 || report.failed > 0 {
        anyhow::bail!("{} webhook(s) still pending, {} abandoned", report.pending, report.failed);
    }
    Ok(())
}

fn reprocess(a: ReprocessArgs) -> anyhow::Result<()> {
    // Policy first: nothing starts if the workspace rules refuse the request.
    veil::policy::check(&veil::policy::Request {
        hipaa: a.hipaa || forced_hipaa(),
        destination: a.dest.as_deref(),
        webhook_url: a.webhook.webhook_url.as_deref(),
        outputs: &[],
    })?;
    let dest = a.dest.as_deref().ok_or_else(|| anyhow::anyhow!("--dest is required (e.g. file:///abs/dir)"))?;
    let mut destination = Destination::parse(dest)?;
    destination.set_part_size(a.part_size_mib.saturating_mul(1 << 20));
    let webhooks = match &a.webhook.webhook_url {
        None => None,
        Some(url) => {
            webhook::validate_url(url)?;
            Some(Webhooks {
                url: url.clone(),
                config: webhook_config(&a.webhook)?,
                outbox: Outbox::open(&a.webhook.outbox_dir.clone().unwrap_or_else(default_outbox))?,
                wait: std::time::Duration::from_secs(a.webhook.webhook_wait_s),
            })
        }
    };
    let opts = ReprocessOptions {
        webhooks,
        destination,
        layout: a.layout,
        profile: a.profile,
        spill_dir: a.spill_dir.unwrap_or_else(recording::default_spill_dir),
        chat: !a.no_chat,
        include_direct: a.include_direct,
        retry: veil::upload::stream::RetryPolicy {
            retention: std::time::Duration::from_secs(a.upload_retention_s),
            ..Default::default()
        },
        cancel: cancel_on_signals(),
    };
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(1000);
        b.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{bar:40}] {percent:>3}%  {msg}")
                .expect("static template")
                .progress_chars("=> "),
        );
        b
    });
    let started = Instant::now();
    let result = recording::reprocess(&a.session_dir, &opts, |pos, dur| {
        if let Some(b) = &bar {
            b.set_position(pos * 1000 / dur.max(1));
            let wall = started.elapsed().as_secs_f64();
            if wall > 0.0 {
                b.set_message(format!("{:.1}x real time", pos as f64 / 1000.0 / wall));
            }
        }
    });
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    if matches!(result, Err(recording::RecordingError::Cancelled)) {
        return Err(Cancelled.into());
    }
    let result = result.with_context(|| format!("reprocess {}", a.session_dir.display()))?;
    println!("{}", serde_json::to_string_pretty(&result)?);
    if let Some(w) = result.webhooks.as_ref().filter(|w| w.pending > 0) {
        eprintln!("warning: {} webhook(s) not delivered yet; they stay in the outbox (veil webhook-deliver)", w.pending);
    }
    Ok(())
}
