//! Profiles that would write files (or read them) are refused before anything starts.

use veil::compose::profile::Profile;

#[test]
fn file_writing_profiles_are_refused() {
    veil::compose::init().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evil.toml");
    std::fs::write(
        &path,
        "video = \"x264enc ! tee name=t ! queue ! filesink location=/tmp/x.h264 t. ! queue\"\naudio = \"avenc_aac\"\nmux = \"mp4mux\"\nextension = \"mp4\"\ncontent_type = \"video/mp4\"\n",
    )
    .unwrap();
    let err = Profile::load(path.to_str().unwrap()).unwrap_err().to_string();
    assert!(err.contains("field `video`") && err.contains("filesink"), "{err}");

    std::fs::write(&path, "video = \"x264enc\"\naudio = \"avenc_aac\"\nmux = \"splitmuxsink\"\nextension = \"mp4\"\ncontent_type = \"video/mp4\"\n").unwrap();
    let err = Profile::load(path.to_str().unwrap()).unwrap_err().to_string();
    assert!(err.contains("field `mux`"), "{err}");
}

#[test]
fn openh264_profile_is_valid() {
    veil::compose::init().unwrap();
    let p = Profile::load(concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/openh264.toml")).unwrap();
    assert_eq!(p.extension, "mp4");
}

#[test]
fn audio_priming_must_be_a_small_positive_delay() {
    veil::compose::init().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    let body = |priming: &str| format!("video = \"x264enc\"\naudio = \"avenc_aac\"\nmux = \"mp4mux\"\nextension = \"mp4\"\ncontent_type = \"video/mp4\"\naudio_priming_ms = {priming}\n");
    std::fs::write(&path, body("-5")).unwrap();
    let err = Profile::load(path.to_str().unwrap()).unwrap_err().to_string();
    assert!(err.contains("field `audio_priming_ms`"), "{err}");
    std::fs::write(&path, body("21.333")).unwrap();
    assert_eq!(Profile::load(path.to_str().unwrap()).unwrap().audio_priming_ms, 21.333);
}
