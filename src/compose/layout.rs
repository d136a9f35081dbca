//! Layout maths: where each tile goes at a given moment. Pure, no GStreamer.
//!
//! A [`Scene`] lists tiles (one camera tile per peer, one per screen share) with the
//! session-time intervals in which they are visible. [`Scene::at`] returns the rectangles for
//! one instant; the compositor asks for every output frame, so layout changes land on exact
//! frame times whether the pipeline runs faster than real time (reprocess) or live.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rect {
    pub x: i32,
    pub y: i32,
    pub w: i32,
    pub h: i32,
}

impl Rect {
    pub const fn new(x: i32, y: i32, w: i32, h: i32) -> Self {
        Self { x, y, w, h }
    }
    pub fn contains(&self, o: &Rect) -> bool {
        o.x >= self.x && o.y >= self.y && o.x + o.w <= self.x + self.w && o.y + o.h <= self.y + self.h
    }
    pub fn overlaps(&self, o: &Rect) -> bool {
        self.x < o.x + o.w && o.x < self.x + self.w && self.y < o.y + o.h && o.y < self.y + self.h
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LayoutMode {
    /// Grid of present peers; a live screen share takes the main region, cameras in a strip.
    #[default]
    Auto,
    /// Every tile (cameras and screen shares) in one grid.
    Grid,
    /// The active speaker large, everyone else in a strip.
    Speaker,
    /// Screen-share focus; a grid when nobody shares.
    Screen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TileKind {
    Camera,
    Screen,
}

/// Half-open interval of session time in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start_ms: u64,
    pub end_ms: u64,
}

impl Span {
    pub fn contains(&self, t_ms: u64) -> bool {
        self.start_ms <= t_ms && t_ms < self.end_ms
    }
}

#[derive(Debug, Clone)]
pub struct Tile {
    pub kind: TileKind,
    /// Index of the peer this tile belongs to (for the active-speaker layout).
    pub peer: usize,
    pub visible: Span,
}

#[derive(Debug, Clone)]
pub struct Scene {
    pub tiles: Vec<Tile>,
    /// Region available to the tiles (the output minus the chat panel).
    pub area: Rect,
    pub mode: LayoutMode,
}

/// Tile aspect ratio (16:9) used to size grid cells.
const AR_W: i64 = 16;
const AR_H: i64 = 9;
const GAP: i32 = 4;

impl Scene {
    /// Rectangles of the tiles visible at `t_ms`, as `(tile index, rect)`.
    /// `speaker` is the peer index of the current active speaker, if known.
    pub fn at(&self, t_ms: u64, speaker: Option<usize>) -> Vec<(usize, Rect)> {
        let visible: Vec<usize> = (0..self.tiles.len()).filter(|&i| self.tiles[i].visible.contains(t_ms)).collect();
        if visible.is_empty() {
            return Vec::new();
        }
        let screens: Vec<usize> = visible.iter().copied().filter(|&i| self.tiles[i].kind == TileKind::Screen).collect();
        let focus = match self.mode {
            LayoutMode::Grid => None,
            LayoutMode::Auto | LayoutMode::Screen => screens.first().copied(),
            LayoutMode::Speaker => screens.first().copied().or_else(|| {
                let cams = visible.iter().copied().filter(|&i| self.tiles[i].kind == TileKind::Camera);
                let mut cams = cams.peekable();
                let first = cams.peek().copied();
                cams.find(|&i| Some(self.tiles[i].peer) == speaker).or(first)
            }),
        };
        match focus {
            None => visible.iter().copied().zip(grid(visible.len(), self.area)).collect(),
            Some(main) => {
                let others: Vec<usize> = visible.iter().copied().filter(|&i| i != main).collect();
                let (big, strip) = focus_with_strip(others.len(), self.area);
                std::iter::once((main, big)).chain(others.into_iter().zip(strip)).collect()
            }
        }
    }

    /// Session times at which the set of visible tiles changes (sorted, unique).
    pub fn change_points(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.tiles.iter().flat_map(|t| [t.visible.start_ms, t.visible.end_ms]).collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// Grid of `n` 16:9 cells, as large as fits in `area`, centred; a short last row is centred.
pub fn grid(n: usize, area: Rect) -> Vec<Rect> {
    if n == 0 || area.w <= 0 || area.h <= 0 {
        return Vec::new();
    }
    let (mut best_cols, mut best_w) = (1usize, 0i64);
    for cols in 1..=n {
        let rows = n.div_ceil(cols);
        let cw = (area.w as i64 - GAP as i64 * (cols as i64 - 1)) / cols as i64;
        let ch = (area.h as i64 - GAP as i64 * (rows as i64 - 1)) / rows as i64;
        let w = cw.min(ch * AR_W / AR_H);
        if w > best_w {
            best_w = w;
            best_cols = cols;
        }
    }
    let cols = best_cols;
    let rows = n.div_ceil(cols);
    let w = best_w.max(2) as i32 & !1;
    let h = ((w as i64 * AR_H / AR_W) as i32).max(2) & !1;
    let total_h = rows as i32 * h + (rows as i32 - 1) * GAP;
    let y0 = area.y + (area.h - total_h) / 2;
    let mut out = Vec::with_capacity(n);
    for r in 0..rows {
        let in_row = if r + 1 == rows { n - cols * (rows - 1) } else { cols };
        let row_w = in_row as i32 * w + (in_row as i32 - 1) * GAP;
        let x0 = area.x + (area.w - row_w) / 2;
        for c in 0..in_row {
            out.push(Rect::new(x0 + c as i32 * (w + GAP), y0 + r as i32 * (h + GAP), w, h));
        }
    }
    out
}

/// One main region and a strip of `n` small tiles along the bottom. Without others the main
/// region takes the whole area.
pub fn focus_with_strip(n: usize, area: Rect) -> (Rect, Vec<Rect>) {
    if n == 0 {
        return (area, Vec::new());
    }
    let strip_h = (area.h / 5).max(2) & !1;
    let main = Rect::new(area.x, area.y, area.w, area.h - strip_h - GAP);
    let strip = Rect::new(area.x, area.y + area.h - strip_h, area.w, strip_h);
    let mut h = strip_h;
    let mut w = (h as i64 * AR_W / AR_H) as i32;
    let needed = n as i32 * w + (n as i32 - 1) * GAP;
    if needed > strip.w {
        w = ((strip.w - (n as i32 - 1) * GAP) / n as i32).max(2);
        h = (w as i64 * AR_H / AR_W) as i32;
    }
    let (w, h) = (w & !1, h.max(2) & !1);
    let row_w = n as i32 * w + (n as i32 - 1) * GAP;
    let x0 = strip.x + (strip.w - row_w) / 2;
    let y = strip.y + (strip.h - h) / 2;
    (main, (0..n).map(|i| Rect::new(x0 + i as i32 * (w + GAP), y, w, h)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: Rect = Rect::new(0, 0, 1280, 720);
    const WITH_CHAT: Rect = Rect::new(0, 0, 960, 720);

    fn assert_sane(rects: &[Rect], area: Rect) {
        for (i, r) in rects.iter().enumerate() {
            assert!(r.w > 0 && r.h > 0, "tile {i} empty: {r:?}");
            assert!(area.contains(r), "tile {i} {r:?} outside {area:?}");
            for (j, o) in rects.iter().enumerate().skip(i + 1) {
                assert!(!r.overlaps(o), "tiles {i} {r:?} and {j} {o:?} overlap");
            }
        }
    }

    #[test]
    fn grid_1_to_16_fits_without_overlap() {
        for area in [FULL, WITH_CHAT] {
            for n in 1..=16 {
                let g = grid(n, area);
                assert_eq!(g.len(), n);
                assert_sane(&g, area);
                // all cells the same 16:9 size
                for r in &g {
                    assert_eq!((r.w, r.h), (g[0].w, g[0].h));
                    assert!((r.w as f64 / r.h as f64 - 16.0 / 9.0).abs() < 0.02, "{r:?}");
                }
            }
        }
    }

    #[test]
    fn grid_known_shapes() {
        assert_eq!(grid(1, FULL), vec![Rect::new(0, 0, 1280, 720)]);
        let two = grid(2, FULL);
        assert_eq!(two[0].y, two[1].y, "two tiles side by side");
        let four = grid(4, FULL);
        assert_eq!(four[0].y, four[1].y);
        assert!(four[2].y > four[0].y, "2x2");
        let three = grid(3, FULL);
        // 2 + 1, the last row centred
        assert_eq!(three[0].y, three[1].y);
        assert_eq!(three[2].x + three[2].w / 2, 640);
        assert_eq!(grid(16, FULL).iter().filter(|r| r.y == 0 || r.y == grid(16, FULL)[0].y).count(), 4);
    }

    #[test]
    fn grid_tiles_get_smaller_as_peers_join() {
        let mut last = i32::MAX;
        for n in 1..=16 {
            let w = grid(n, FULL)[0].w;
            assert!(w <= last, "n={n}");
            last = w;
        }
    }

    #[test]
    fn screen_focus_with_strip_1_to_16() {
        for area in [FULL, WITH_CHAT] {
            for n in 0..=15 {
                let (main, strip) = focus_with_strip(n, area);
                assert_eq!(strip.len(), n);
                let mut all = vec![main];
                all.extend(strip.iter().copied());
                assert_sane(&all, area);
                if n > 0 {
                    assert!(main.w * main.h > 4 * strip[0].w * strip[0].h, "main region is the largest");
                    assert!(strip.iter().all(|r| r.y > main.y + main.h - 1));
                } else {
                    assert_eq!(main, area);
                }
            }
        }
    }

    fn scene(mode: LayoutMode) -> Scene {
        Scene {
            tiles: vec![
                Tile { kind: TileKind::Camera, peer: 0, visible: Span { start_ms: 0, end_ms: 10_000 } },
                Tile { kind: TileKind::Camera, peer: 1, visible: Span { start_ms: 2_000, end_ms: 8_000 } },
                Tile { kind: TileKind::Screen, peer: 0, visible: Span { start_ms: 4_000, end_ms: 6_000 } },
            ],
            area: FULL,
            mode,
        }
    }

    #[test]
    fn scene_follows_joins_leaves_and_screen_share() {
        let s = scene(LayoutMode::Auto);
        assert_eq!(s.at(1_000, None), vec![(0, FULL)]);
        let two = s.at(2_000, None);
        assert_eq!(two.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![0, 1]);
        let share = s.at(5_000, None);
        assert_eq!(share[0].0, 2, "the screen share gets the main region");
        assert!(share[0].1.w > share[1].1.w * 3);
        assert_eq!(s.at(7_000, None).len(), 2);
        assert_eq!(s.at(8_000, None), vec![(0, FULL)], "left at 8 s: gone at 8 s");
        assert!(s.at(10_000, None).is_empty());
        assert_eq!(s.change_points(), vec![0, 2_000, 4_000, 6_000, 8_000, 10_000]);
    }

    #[test]
    fn grid_mode_puts_screen_in_the_grid() {
        let s = scene(LayoutMode::Grid);
        let r = s.at(5_000, None);
        assert_eq!(r.len(), 3);
        assert!(r.iter().all(|(_, x)| x.w == r[0].1.w));
    }

    #[test]
    fn speaker_mode_focuses_the_speaker() {
        let s = scene(LayoutMode::Speaker);
        let r = s.at(3_000, Some(1));
        assert_eq!(r[0].0, 1);
        assert!(r[0].1.w > r[1].1.w * 3);
        // unknown speaker: first camera
        assert_eq!(s.at(3_000, None)[0].0, 0);
    }
}
