//! The pickers on the terminal: `/dev/tty` opened for reading and writing (so they work with
//! stdout redirected), raw mode and the alternate screen while a picker runs, the terminal put
//! back whatever happens.

use std::fs::File;
use std::io::IsTerminal as _;

use anyhow::Context as _;
use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

use super::{Key, Outcome};

/// Whether there is someone to ask: stdin is a terminal and `/dev/tty` opens.
pub fn available() -> bool {
    std::io::stdin().is_terminal() && std::fs::OpenOptions::new().read(true).write(true).open("/dev/tty").is_ok()
}

/// One picker session; dropping it restores the terminal.
pub struct Session {
    tty: File,
    terminal: Terminal<CrosstermBackend<File>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Session")
    }
}

impl Session {
    pub fn open() -> anyhow::Result<Self> {
        let tty =
            std::fs::OpenOptions::new().read(true).write(true).open("/dev/tty").context("cannot open `/dev/tty`")?;
        crossterm::terminal::enable_raw_mode().context("cannot put the terminal in raw mode")?;
        let mut out = tty.try_clone().context("cannot open `/dev/tty`")?;
        if let Err(e) = crossterm::execute!(out, crossterm::terminal::EnterAlternateScreen, crossterm::cursor::Hide) {
            let _ = crossterm::terminal::disable_raw_mode();
            return Err(e).context("cannot draw on the terminal");
        }
        let terminal = match tty.try_clone().and_then(|t| Terminal::new(CrosstermBackend::new(t))) {
            Ok(t) => t,
            Err(e) => {
                restore(&mut out);
                return Err(e).context("cannot draw on the terminal");
            }
        };
        Ok(Self { tty, terminal })
    }

    /// Draws with `draw` and feeds keys to `step` until it is done or cancelled.
    pub fn run<S, T>(
        &mut self,
        state: &mut S,
        draw: impl Fn(&mut ratatui::Frame<'_>, &S),
        mut step: impl FnMut(&mut S, Key) -> Outcome<T>,
    ) -> anyhow::Result<Option<T>> {
        // Each picker starts from a blank screen with a fresh terminal (whose first frame is drawn
        // whole), not from the last one's cells. (`Terminal::clear` would ask the terminal where
        // its cursor is, which not every terminal answers.)
        let tty = self.tty.try_clone().context("cannot open `/dev/tty`")?;
        self.terminal = Terminal::new(CrosstermBackend::new(tty)).context("cannot draw on the terminal")?;
        crossterm::execute!(
            self.terminal.backend_mut(),
            crossterm::terminal::Clear(crossterm::terminal::ClearType::All)
        )
        .context("cannot draw on the terminal")?;
        loop {
            self.terminal.draw(|f| draw(f, state)).context("cannot draw on the terminal")?;
            let Some(key) = next_key()? else { continue };
            match step(state, key) {
                Outcome::Continue => {}
                Outcome::Done(v) => return Ok(Some(v)),
                Outcome::Cancel => return Ok(None),
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        restore(self.terminal.backend_mut());
    }
}

fn restore(out: &mut impl std::io::Write) {
    let _ = crossterm::execute!(out, crossterm::cursor::Show, crossterm::terminal::LeaveAlternateScreen);
    let _ = crossterm::terminal::disable_raw_mode();
}

/// The next key press the pickers know; `None` for anything else (a resize redraws).
fn next_key() -> anyhow::Result<Option<Key>> {
    let Event::Key(k) = event::read().context("cannot read the terminal")? else { return Ok(None) };
    if k.kind == KeyEventKind::Release {
        return Ok(None);
    }
    let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
    Ok(Some(match k.code {
        KeyCode::Char('c') if ctrl => Key::Cancel,
        KeyCode::Char('d') if ctrl => Key::Enter,
        KeyCode::Esc => Key::Cancel,
        KeyCode::Char(c) if !ctrl => Key::Char(c),
        KeyCode::Backspace => Key::Backspace,
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::Left => Key::Left,
        KeyCode::Right => Key::Right,
        KeyCode::Enter => Key::Enter,
        _ => return Ok(None),
    }))
}
