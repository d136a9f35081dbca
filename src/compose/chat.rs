//! Chat: the CSV sidecar and the text of the side panel rendered into the video.
//! Pure functions over the session's messages; direct messages are filtered by the caller's
//! choice (`include_direct`).

use chrono::{DateTime, Duration, SecondsFormat, Utc};

use crate::session::ChatMessage;

pub const CSV_HEADER: &str = "SenderPeerID,SenderName,SenderUserID,Roles,SentAt,Type,Message";
/// Messages shown at once in the panel.
const PANEL_LINES: usize = 8;
/// Characters of one message shown in the panel (the CSV keeps the whole text).
const PANEL_CHARS: usize = 160;

/// The messages that are recorded, in time order.
pub fn recorded(messages: &[ChatMessage], include_direct: bool) -> Vec<&ChatMessage> {
    let mut v: Vec<&ChatMessage> = messages.iter().filter(|m| include_direct || !m.is_direct()).collect();
    v.sort_by_key(|m| m.sent_ms);
    v
}

pub fn sent_at(started_at: DateTime<Utc>, sent_ms: u64) -> DateTime<Utc> {
    started_at + Duration::milliseconds(sent_ms.min(i64::MAX as u64) as i64)
}

/// One CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180).
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// The chat CSV (CRLF line ends, header first). Roles are joined with `;`.
pub fn csv(messages: &[&ChatMessage], started_at: DateTime<Utc>) -> String {
    let mut out = String::with_capacity(64 + messages.len() * 96);
    out.push_str(CSV_HEADER);
    out.push_str("\r\n");
    for m in messages {
        let fields = [
            csv_field(&m.sender_peer_id),
            csv_field(m.sender_name.expose()),
            csv_field(&m.sender_user_id),
            csv_field(&m.roles.join(";")),
            sent_at(started_at, m.sent_ms).to_rfc3339_opts(SecondsFormat::Millis, true),
            csv_field(&m.kind),
            csv_field(m.message.expose()),
        ];
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    }
    out
}

/// One state of the chat panel: shown from `start_ms` until `end_ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct PanelFrame {
    pub start_ms: u64,
    pub end_ms: u64,
    /// Pango markup.
    pub markup: String,
}

/// The panel's states over the whole session: an empty panel from 0, then one state per
/// message showing the latest few. Contiguous from 0 to `duration_ms`.
pub fn panel_frames(messages: &[&ChatMessage], started_at: DateTime<Utc>, duration_ms: u64) -> Vec<PanelFrame> {
    let header = "<span size=\"large\" weight=\"bold\">Chat</span>\n";
    let mut frames = Vec::new();
    let mut start = 0u64;
    let mut text = header.to_string();
    for (i, m) in messages.iter().enumerate() {
        let at = m.sent_ms.min(duration_ms);
        if at > start {
            frames.push(PanelFrame { start_ms: start, end_ms: at, markup: text.clone() });
            start = at;
        }
        let shown = &messages[(i + 1).saturating_sub(PANEL_LINES)..=i];
        text = header.to_string();
        for s in shown {
            let time = sent_at(started_at, s.sent_ms).format("%H:%M:%S");
            let mut body: String = s.message.expose().chars().take(PANEL_CHARS).collect();
            if s.message.expose().chars().count() > PANEL_CHARS {
                body.push('…');
            }
            text.push_str(&format!(
                "\n<span foreground=\"#9ecbff\">{time}  <b>{}</b></span>\n{}\n",
                markup_escape(s.sender_name.expose()),
                markup_escape(&body)
            ));
        }
    }
    if duration_ms > start {
        frames.push(PanelFrame { start_ms: start, end_ms: duration_ms, markup: text });
    }
    frames
}

/// Escapes text for Pango markup.
pub fn markup_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::Redacted;

    fn msg(id: &str, sent_ms: u64, name: &str, text: &str, to: Option<Vec<String>>) -> ChatMessage {
        ChatMessage {
            id: id.into(),
            sent_ms,
            sender_peer_id: format!("p-{id}"),
            sender_name: Redacted::new(name.into()),
            sender_user_id: "u-1".into(),
            roles: vec!["host".into(), "guest".into()],
            kind: "chat".into(),
            to,
            message: Redacted::new(text.into()),
        }
    }

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-30T14:00:00Z").unwrap().with_timezone(&Utc)
    }

    #[test]
    fn csv_quotes_by_the_rules() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field("cr\rhere"), "\"cr\rhere\"");
        assert_eq!(csv_field("日本語 👋"), "日本語 👋");
    }

    #[test]
    fn csv_rows_and_direct_messages() {
        let all = vec![
            msg("2", 2_500, "Bob \"B\", Jr.", "hi,\nthere", None),
            msg("1", 1_000, "Ana", "hello 👋", None),
            msg("3", 3_000, "Ana", "private", Some(vec!["p-2".into()])),
        ];
        let rec = recorded(&all, false);
        let text = csv(&rec, t0());
        let expected = "SenderPeerID,SenderName,SenderUserID,Roles,SentAt,Type,Message\r\n\
            p-1,Ana,u-1,host;guest,2026-11-30T14:00:01.000Z,chat,hello 👋\r\n\
            p-2,\"Bob \"\"B\"\", Jr.\",u-1,host;guest,2026-11-30T14:00:02.500Z,chat,\"hi,\nthere\"\r\n";
        assert_eq!(text, expected);
        assert_eq!(recorded(&all, true).len(), 3);
    }

    #[test]
    fn panel_is_contiguous_and_escaped() {
        let all = [msg("1", 1_000, "A<b>", "x & y", None), msg("2", 4_000, "B", "second", None)];
        let rec: Vec<&ChatMessage> = all.iter().collect();
        let f = panel_frames(&rec, t0(), 10_000);
        assert_eq!(f.iter().map(|p| (p.start_ms, p.end_ms)).collect::<Vec<_>>(), vec![(0, 1_000), (1_000, 4_000), (4_000, 10_000)]);
        assert!(!f[0].markup.contains("x &amp; y"));
        assert!(f[1].markup.contains("A&lt;b&gt;") && f[1].markup.contains("x &amp; y") && f[1].markup.contains("14:00:01"));
        assert!(f[2].markup.contains("second"));
    }

    #[test]
    fn panel_keeps_latest_messages() {
        let all: Vec<ChatMessage> = (0..20).map(|i| msg(&i.to_string(), 100 * i, "N", &format!("m{i}"), None)).collect();
        let rec: Vec<&ChatMessage> = all.iter().collect();
        let last = panel_frames(&rec, t0(), 5_000).pop().unwrap();
        assert!(last.markup.contains("m19") && last.markup.contains("m12") && !last.markup.contains("m11\n"));
    }
}
