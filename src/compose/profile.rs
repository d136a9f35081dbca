//! Encoder and muxer profiles, kept as data in `pipelines/NAME.toml` so that an encoder can be
//! changed without a rebuild. A profile is checked before use: every chain must parse, and no
//! element in it may be a source or a sink (only the appsink after the muxer leaves the
//! pipeline, and it hands bytes to the encrypted spill).

use std::path::{Path, PathBuf};

use gstreamer as gst;
use gstreamer::prelude::*;
use serde::Deserialize;

/// The default profile, built in so that `veil` works from any directory.
const BUILTIN_DEFAULT: &str = include_str!("../../pipelines/default.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    #[serde(skip)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub video: String,
    pub audio: String,
    pub mux: String,
    pub extension: String,
    pub content_type: String,
    /// The audio encoder's priming delay in milliseconds (AAC: 1024 samples), which a
    /// fragmented MP4 cannot signal: the video is delayed by as much so they stay in sync.
    #[serde(default)]
    pub audio_priming_ms: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("profile `{name}`: not found (looked in {looked})")]
    NotFound { name: String, looked: String },
    #[error("profile {path}: {message}")]
    Invalid { path: String, message: String },
    #[error("profile {path}: field `{field}`: {message}")]
    Field { path: String, field: &'static str, message: String },
}

/// Where named profiles are looked up: `$VEIL_PIPELINES_DIR`, `./pipelines`, then the
/// source tree's `pipelines/`.
fn search_dirs() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(d) = std::env::var_os("VEIL_PIPELINES_DIR") {
        v.push(PathBuf::from(d));
    }
    v.push(PathBuf::from("pipelines"));
    v.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines"));
    v
}

impl Profile {
    /// Loads a profile by name (`default`, `openh264`, …) or from a path ending in `.toml`.
    pub fn load(name_or_path: &str) -> Result<Self, ProfileError> {
        let (text, origin, name) = if name_or_path.ends_with(".toml") {
            let p = Path::new(name_or_path);
            let text = std::fs::read_to_string(p)
                .map_err(|e| ProfileError::Invalid { path: p.display().to_string(), message: e.to_string() })?;
            let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            (text, p.display().to_string(), stem)
        } else {
            if name_or_path.is_empty() || !name_or_path.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return Err(ProfileError::NotFound { name: name_or_path.into(), looked: "(invalid profile name)".into() });
            }
            let dirs = search_dirs();
            let found = dirs.iter().map(|d| d.join(format!("{name_or_path}.toml"))).find(|p| p.is_file());
            match found {
                Some(p) => {
                    let text = std::fs::read_to_string(&p)
                        .map_err(|e| ProfileError::Invalid { path: p.display().to_string(), message: e.to_string() })?;
                    (text, p.display().to_string(), name_or_path.to_owned())
                }
                None if name_or_path == "default" => (BUILTIN_DEFAULT.to_owned(), "<built-in default>".into(), "default".into()),
                None => {
                    let looked = dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ");
                    return Err(ProfileError::NotFound { name: name_or_path.into(), looked });
                }
            }
        };
        let mut p: Profile = toml::from_str(&text).map_err(|e| ProfileError::Invalid { path: origin.clone(), message: e.to_string() })?;
        p.name = name;
        p.validate(&origin)?;
        Ok(p)
    }

    /// Parses every chain and refuses sources and sinks. Needs `gst::init`.
    pub fn validate(&self, origin: &str) -> Result<(), ProfileError> {
        let field_err = |field: &'static str, message: String| ProfileError::Field { path: origin.into(), field, message };
        for (field, desc) in [("video", &self.video), ("audio", &self.audio)] {
            let bin = gst::parse::bin_from_description(desc, true).map_err(|e| field_err(field, e.to_string()))?;
            check_no_io(bin.upcast_ref()).map_err(|m| field_err(field, m))?;
        }
        let mux = self.build_mux().map_err(|e| field_err("mux", e))?;
        check_no_io(&mux).map_err(|m| field_err("mux", m))?;
        if mux.request_pad_simple("video_%u").is_none() && mux.request_pad_simple("video_0").is_none() {
            return Err(field_err("mux", "the muxer has no video request pad".into()));
        }
        if !(0.0..1000.0).contains(&self.audio_priming_ms) {
            return Err(field_err("audio_priming_ms", "must be at least 0 and below 1000".into()));
        }
        if self.extension.is_empty() || !self.extension.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(field_err("extension", "must be a short alphanumeric file extension".into()));
        }
        Ok(())
    }

    pub fn build_video(&self) -> Result<gst::Bin, gst::glib::Error> {
        gst::parse::bin_from_description(&self.video, true)
    }

    pub fn build_audio(&self) -> Result<gst::Bin, gst::glib::Error> {
        gst::parse::bin_from_description(&self.audio, true)
    }

    /// The muxer: exactly one element.
    pub fn build_mux(&self) -> Result<gst::Element, String> {
        let e = gst::parse::launch(&self.mux).map_err(|e| e.to_string())?;
        if e.is::<gst::Bin>() {
            return Err("must be a single muxer element, not a chain".into());
        }
        Ok(e)
    }
}

/// Refuses elements that read or write outside the pipeline (sources, sinks, anything with a
/// `location` property).
fn check_no_io(e: &gst::Element) -> Result<(), String> {
    let mut elements = vec![e.clone()];
    if let Some(bin) = e.downcast_ref::<gst::Bin>() {
        elements.extend(bin.iterate_recurse().into_iter().flatten());
    }
    for el in elements {
        let Some(factory) = el.factory() else { continue };
        let klass = factory.metadata(gst::ELEMENT_METADATA_KLASS).unwrap_or_default();
        let name = factory.name();
        if klass.contains("Sink") || klass.contains("Source") || el.find_property("location").is_some() {
            return Err(format!("element `{name}` is a source or sink; profiles may only encode and mux"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_and_file_profiles_validate() {
        crate::compose::init().unwrap();
        let p = Profile::load("default").unwrap();
        assert!(p.mux.contains("fragment-duration"));
        assert_eq!(p.extension, "mp4");
    }

    #[test]
    fn unknown_profile_and_unknown_field() {
        crate::compose::init().unwrap();
        assert!(Profile::load("nope").unwrap_err().to_string().contains("not found"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.toml");
        std::fs::write(&path, "video = \"x264enc\"\naudio = \"avenc_aac\"\nmux = \"mp4mux\"\nextension = \"mp4\"\ncontent_type = \"v\"\nbogus = 1\n").unwrap();
        let err = Profile::load(path.to_str().unwrap()).unwrap_err().to_string();
        assert!(err.contains("bogus"), "{err}");
    }
}
