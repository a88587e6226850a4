//! The operator's terminal while an agent runs on it: the window title names the bottle (OSC 0)
//! and, with a colour, the palette entry and the background are tinted (OSC 4, OSC 11) so several
//! agents side by side are told apart at a glance — even when the agent's TUI draws in 24-bit
//! colour, which bypasses the palette. [`Tint`] resets both (OSC 104, OSC 111) when dropped: on a
//! normal exit, after Ctrl-C, and on every error path that unwinds through it.

use std::io::{IsTerminal as _, Write as _};

use bottle_core::Color;

/// xterm's default RGB of the 16 ANSI colours.
const PALETTE: [(u8, u8, u8); 16] = [
    (0x00, 0x00, 0x00),
    (0xcd, 0x00, 0x00),
    (0x00, 0xcd, 0x00),
    (0xcd, 0xcd, 0x00),
    (0x00, 0x00, 0xee),
    (0xcd, 0x00, 0xcd),
    (0x00, 0xcd, 0xcd),
    (0xe5, 0xe5, 0xe5),
    (0x7f, 0x7f, 0x7f),
    (0xff, 0x00, 0x00),
    (0x00, 0xff, 0x00),
    (0xff, 0xff, 0x00),
    (0x5c, 0x5c, 0xff),
    (0xff, 0x00, 0xff),
    (0x00, 0xff, 0xff),
    (0xff, 0xff, 0xff),
];

/// The SGR foreground code of `color` (30–37, 90–97), for status lines inside the bottle.
pub fn sgr(color: Color) -> u8 {
    let i = color.ansi_index();
    if i < 8 { 30 + i } else { 90 + (i - 8) }
}

/// The escapes that set the title and tint for `label` in `color`.
pub fn start_sequence(label: &str, color: Option<Color>) -> String {
    // A title is one line of printable text: control characters would end the escape early.
    let title: String = label.chars().filter(|c| !c.is_control()).collect();
    let mut s = format!("\x1b]0;{title}\x07");
    if let Some(c) = color {
        let i = usize::from(c.ansi_index());
        let (r, g, b) = PALETTE[i];
        s.push_str(&format!("\x1b]4;{i};rgb:{r:02x}/{g:02x}/{b:02x}\x07"));
        // A dark shade of the colour: readable under any foreground.
        let shade = |v: u8| v / 7;
        s.push_str(&format!("\x1b]11;rgb:{:02x}/{:02x}/{:02x}\x07", shade(r), shade(g), shade(b)));
    }
    s
}

/// The escapes that undo [`start_sequence`]'s colours.
pub const RESET_SEQUENCE: &str = "\x1b]104\x07\x1b]111\x07";

/// The tint of one agent run; reset when dropped.
#[derive(Debug)]
pub struct Tint {
    tinted: bool,
}

impl Tint {
    /// Sets title and tint when stdout is a terminal; does nothing otherwise.
    pub fn begin(label: &str, color: Option<Color>) -> Self {
        let mut out = std::io::stdout();
        if !out.is_terminal() {
            return Self { tinted: false };
        }
        let _ = out.write_all(start_sequence(label, color).as_bytes());
        let _ = out.flush();
        Self { tinted: color.is_some() }
    }
}

impl Drop for Tint {
    fn drop(&mut self) {
        if self.tinted {
            let mut out = std::io::stdout();
            let _ = out.write_all(RESET_SEQUENCE.as_bytes());
            let _ = out.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn title_and_tint() {
        let red = Color::parse("red").expect("colour");
        let s = start_sequence("dev\x07evil", Some(red));
        assert!(s.starts_with("\x1b]0;devevil\x07"), "{s:?}");
        assert!(s.contains("\x1b]4;1;rgb:cd/00/00\x07"), "{s:?}");
        assert!(s.contains("\x1b]11;rgb:1d/00/00\x07"), "{s:?}");
        assert_eq!(start_sequence("x", None), "\x1b]0;x\x07");
        assert_eq!(sgr(red), 31);
        assert_eq!(sgr(Color::parse("bright-cyan").expect("colour")), 96);
    }
}
