//! The command line. `anyhow` lives here and in `main.rs` only.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use veil::compose::layout::LayoutMode;
use veil::recording::{self, ReprocessOptions};
use veil::upload::Destination;

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
}

#[derive(clap::Args)]
pub struct ReprocessArgs {
    /// Session folder holding session.json, the track files and the chat log.
    pub session_dir: PathBuf,
    /// Destination URL, e.g. file:///abs/dir.
    #[arg(long)]
    pub dest: String,
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
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    init_logging(cli.log_format);
    match cli.command {
        Command::Reprocess(a) => reprocess(a),
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VEIL_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

fn reprocess(a: ReprocessArgs) -> anyhow::Result<()> {
    let destination = Destination::parse(&a.dest)?;
    let opts = ReprocessOptions {
        destination,
        layout: a.layout,
        profile: a.profile,
        spill_dir: a.spill_dir.unwrap_or_else(recording::default_spill_dir),
        chat: !a.no_chat,
        include_direct: a.include_direct,
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
    let result = result.with_context(|| format!("reprocess {}", a.session_dir.display()))?;
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}
