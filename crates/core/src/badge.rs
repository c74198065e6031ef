//! Status badges: the state a group of checks adds up to (a project's, or a tag's across
//! projects), and the small SVG image a README shows for it, in the flat style shields.io
//! made common. Pure: the tally comes from check states, the image from text.

use crate::check::CheckState;

/// What a badge says: the worst state among its checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum BadgeStatus {
    /// No check carries the subject (a project without checks, a tag no check has).
    NoChecks,
    /// Every check is up or not pinged yet (a new check expects nothing yet).
    Up,
    /// At least one check is late (past due, within its grace) and none is down.
    Late,
    /// At least one check is down.
    Down,
}

impl BadgeStatus {
    /// As the badge and its JSON say it.
    pub fn as_str(self) -> &'static str {
        match self {
            BadgeStatus::NoChecks => "no checks",
            BadgeStatus::Up => "up",
            BadgeStatus::Late => "late",
            BadgeStatus::Down => "down",
        }
    }

    /// The colour of the badge's right half (shields.io's palette).
    pub fn hex(self) -> &'static str {
        match self {
            BadgeStatus::NoChecks => "#9f9f9f",
            BadgeStatus::Up => "#4c1",
            BadgeStatus::Late => "#fe7d37",
            BadgeStatus::Down => "#e05d44",
        }
    }

    /// The same colour by the name shields.io's endpoint badges take.
    pub fn color_name(self) -> &'static str {
        match self {
            BadgeStatus::NoChecks => "lightgrey",
            BadgeStatus::Up => "brightgreen",
            BadgeStatus::Late => "orange",
            BadgeStatus::Down => "red",
        }
    }
}

/// How many checks of a badge's subject are in each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub total: u32,
    pub new: u32,
    pub up: u32,
    pub late: u32,
    pub down: u32,
}

impl Tally {
    /// The tally of these states.
    pub fn of(states: impl IntoIterator<Item = CheckState>) -> Tally {
        let mut t = Tally::default();
        for s in states {
            t.total = t.total.saturating_add(1);
            let n = match s {
                CheckState::New => &mut t.new,
                CheckState::Up => &mut t.up,
                CheckState::Late => &mut t.late,
                CheckState::Down => &mut t.down,
            };
            *n = n.saturating_add(1);
        }
        t
    }

    /// The worst state: down over late over up; nothing at all is "no checks".
    pub fn status(&self) -> BadgeStatus {
        if self.total == 0 {
            BadgeStatus::NoChecks
        } else if self.down > 0 {
            BadgeStatus::Down
        } else if self.late > 0 {
            BadgeStatus::Late
        } else {
            BadgeStatus::Up
        }
    }
}

/// Longest label a badge shows, in characters; a longer one is cut with `…`.
pub const MAX_LABEL_CHARS: usize = 64;

/// A badge image: `label` on grey, `status` on its colour, 20 px high, each half as wide as its
/// text plus padding. Both texts are escaped for XML.
pub fn svg(label: &str, status: BadgeStatus) -> String {
    let label = shorten(label);
    let message = status.as_str();
    let lw = text_width(&label) + 2 * PAD;
    let mw = text_width(message) + 2 * PAD;
    let w = lw + mw;
    let (l, m) = (escape(&label), escape(message));
    let color = status.hex();
    // Text is drawn at 10× and scaled down, as shields does, so the positions stay integers.
    let (lx, mx) = (lw * 5, lw * 10 + mw * 5);
    let (ltw, mtw) = ((lw - 2 * PAD) * 10, (mw - 2 * PAD) * 10);
    format!(
        concat!(
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="20" role="img" aria-label="{l}: {m}">"##,
            r##"<title>{l}: {m}</title>"##,
            r##"<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>"##,
            r##"<clipPath id="r"><rect width="{w}" height="20" rx="3" fill="#fff"/></clipPath>"##,
            r##"<g clip-path="url(#r)"><rect width="{lw}" height="20" fill="#555"/><rect x="{lw}" width="{mw}" height="20" fill="{color}"/><rect width="{w}" height="20" fill="url(#s)"/></g>"##,
            r##"<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="110" transform="scale(.1)">"##,
            r##"<text aria-hidden="true" x="{lx}" y="150" fill="#010101" fill-opacity=".3" textLength="{ltw}">{l}</text>"##,
            r##"<text x="{lx}" y="140" textLength="{ltw}">{l}</text>"##,
            r##"<text aria-hidden="true" x="{mx}" y="150" fill="#010101" fill-opacity=".3" textLength="{mtw}">{m}</text>"##,
            r##"<text x="{mx}" y="140" textLength="{mtw}">{m}</text>"##,
            r##"</g></svg>"##,
        ),
        w = w,
        lw = lw,
        mw = mw,
        l = l,
        m = m,
        color = color,
        lx = lx,
        mx = mx,
        ltw = ltw,
        mtw = mtw,
    )
}

/// Padding each side of a text, in px.
const PAD: u32 = 6;

/// The label as shown: at most [`MAX_LABEL_CHARS`] characters, control characters dropped.
pub fn shorten(label: &str) -> String {
    let clean: String = label.chars().filter(|c| !c.is_control()).collect();
    if clean.chars().count() <= MAX_LABEL_CHARS {
        return clean;
    }
    let mut cut: String = clean.chars().take(MAX_LABEL_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// The width of `text` in 11 px Verdana, near enough: a width per class of character
/// (measured from the font's advance widths, rounded to tenths of a pixel).
pub fn text_width(text: &str) -> u32 {
    let tenths: u32 = text
        .chars()
        .map(|c| match c {
            'i' | 'j' | 'l' | '\'' | '.' | ',' | ':' | ';' | '|' | '!' => 34,
            ' ' | 'f' | 'r' | 't' | '(' | ')' | '[' | ']' | '/' | '\\' | '-' => 45,
            'm' | 'w' => 100,
            'M' | 'W' | '@' | '%' => 110,
            'A'..='Z' => 75,
            '0'..='9' | 'a'..='z' | '_' | '#' | '$' | '?' => 68,
            c if c.is_ascii() => 68,
            // Wide scripts (CJK and the like) take about a square each.
            c if (c as u32) >= 0x2E80 => 110,
            _ => 75,
        })
        .fold(0u32, u32::saturating_add);
    tenths.div_ceil(10)
}

/// `text` with the five characters XML gives meaning to escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use CheckState::*;

    #[test]
    fn the_worst_state_wins_and_new_counts_as_up() {
        let cases: &[(&[CheckState], BadgeStatus)] = &[
            (&[], BadgeStatus::NoChecks),
            (&[New], BadgeStatus::Up),
            (&[Up, New], BadgeStatus::Up),
            (&[Up, Late, New], BadgeStatus::Late),
            (&[Late, Down, Up], BadgeStatus::Down),
            (&[Down], BadgeStatus::Down),
        ];
        for (states, want) in cases {
            assert_eq!(Tally::of(states.iter().copied()).status(), *want, "{states:?}");
        }
        let t = Tally::of([Up, Late, Down, New, Up]);
        assert_eq!((t.total, t.up, t.late, t.down, t.new), (5, 2, 1, 1, 1));
    }

    #[test]
    fn width_follows_the_text() {
        assert!(text_width("trading") < text_width("image-workflow"));
        assert!(text_width("iiii") < text_width("mmmm"));
        assert_eq!(text_width(""), 0);
        let narrow = svg("a", BadgeStatus::Up);
        let wide = svg("a much longer label than that", BadgeStatus::Up);
        let width = |s: &str| -> u32 {
            let rest = &s[s.find("width=\"").unwrap_or(0) + 7..];
            rest[..rest.find('"').unwrap_or(0)].parse().unwrap_or(0)
        };
        assert!(width(&narrow) > 0 && width(&narrow) < width(&wide), "{narrow}\n{wide}");
    }

    #[test]
    fn text_is_escaped_and_long_labels_cut() {
        let s = svg("<b>&\"'", BadgeStatus::Down);
        assert!(s.contains("&lt;b&gt;&amp;&quot;&#39;: down"), "{s}");
        assert!(!s.contains("<b>"), "{s}");
        let long = "x".repeat(200);
        let cut = shorten(&long);
        assert_eq!(cut.chars().count(), MAX_LABEL_CHARS);
        assert!(cut.ends_with('…'));
        assert_eq!(shorten("a\u{7}b\nc"), "abc");
        assert!(svg("p", BadgeStatus::Late).contains(BadgeStatus::Late.hex()));
    }
}
