//! The interactive `start`: the agent picker, the ordered bottle multi-select, the backend picker
//! and the label/colour modal.
//!
//! Each is a pure state machine here — a [`Key`] in, an [`Outcome`] out — so its behaviour is
//! tested without a terminal; [`tty`] draws them on `/dev/tty` and feeds them keys. A choice that
//! cannot work (a manifest that fails to load, a backend this machine cannot launch) is shown with
//! its reason and can never be picked.

pub mod draw;
pub mod tty;

use bottle_core::ids::COLOR_NAMES;

/// A key, as the pickers understand it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Backspace,
    Up,
    Down,
    Left,
    Right,
    Enter,
    /// Esc or Ctrl-C: abandon the start.
    Cancel,
}

/// What a key did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<T> {
    Continue,
    Done(T),
    Cancel,
}

/// One row of a picker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub name: String,
    /// A short description (a path, a reason it is unavailable).
    pub detail: String,
    /// Why it cannot be picked, when it cannot.
    pub error: Option<String>,
}

impl Choice {
    pub fn ok(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { name: name.into(), detail: detail.into(), error: None }
    }

    pub fn broken(name: impl Into<String>, error: impl Into<String>) -> Self {
        Self { name: name.into(), detail: String::new(), error: Some(error.into()) }
    }
}

/// Pick one: typing filters (case-insensitive substring), arrows move over the pickable rows,
/// Enter picks.
#[derive(Debug, Clone)]
pub struct ListPicker {
    pub title: String,
    pub items: Vec<Choice>,
    pub filter: String,
    /// Index into [`Self::visible`].
    pub cursor: usize,
    /// Whether typing filters (the agent list) or is ignored (the three backends).
    pub filterable: bool,
}

impl ListPicker {
    pub fn new(title: impl Into<String>, items: Vec<Choice>, filterable: bool) -> Self {
        let mut p = Self { title: title.into(), items, filter: String::new(), cursor: 0, filterable };
        p.settle(true);
        p
    }

    /// Indices of the items the filter lets through, in order.
    pub fn visible(&self) -> Vec<usize> {
        let needle = self.filter.to_lowercase();
        (0..self.items.len()).filter(|&i| self.items[i].name.to_lowercase().contains(&needle)).collect()
    }

    /// The item under the cursor, when it can be picked.
    pub fn current(&self) -> Option<&Choice> {
        let i = *self.visible().get(self.cursor)?;
        Some(&self.items[i]).filter(|c| c.error.is_none())
    }

    /// Keeps the cursor on a pickable visible row, searching forward (or backward) from it.
    fn settle(&mut self, forward: bool) {
        let visible = self.visible();
        if visible.is_empty() {
            self.cursor = 0;
            return;
        }
        self.cursor = self.cursor.min(visible.len() - 1);
        let ok = |c: usize| self.items[visible[c]].error.is_none();
        if ok(self.cursor) {
            return;
        }
        let order: Vec<usize> = if forward {
            (self.cursor..visible.len()).chain(0..self.cursor).collect()
        } else {
            (0..=self.cursor).rev().chain((self.cursor + 1..visible.len()).rev()).collect()
        };
        if let Some(c) = order.into_iter().find(|&c| ok(c)) {
            self.cursor = c;
        }
    }

    fn step(&mut self, down: bool) {
        let visible = self.visible();
        let pickable: Vec<usize> = (0..visible.len()).filter(|&c| self.items[visible[c]].error.is_none()).collect();
        let next = if down {
            pickable.iter().find(|&&c| c > self.cursor)
        } else {
            pickable.iter().rev().find(|&&c| c < self.cursor)
        };
        if let Some(&c) = next {
            self.cursor = c;
        }
    }

    pub fn key(&mut self, key: Key) -> Outcome<String> {
        match key {
            Key::Cancel => return Outcome::Cancel,
            Key::Enter => {
                if let Some(c) = self.current() {
                    return Outcome::Done(c.name.clone());
                }
            }
            Key::Up => self.step(false),
            Key::Down => self.step(true),
            Key::Char(c) if self.filterable && !c.is_control() => {
                self.filter.push(c);
                self.cursor = 0;
                self.settle(true);
            }
            Key::Backspace if self.filterable => {
                self.filter.pop();
                self.cursor = 0;
                self.settle(true);
            }
            _ => {}
        }
        Outcome::Continue
    }
}

/// Pick several, in order: Space toggles the row under the cursor (a newly picked bottle goes
/// last), Enter confirms. The order is the merge order (the last one wins).
#[derive(Debug, Clone)]
pub struct MultiPicker {
    pub title: String,
    pub items: Vec<Choice>,
    /// Picked items' indices, in the order they were picked.
    pub order: Vec<usize>,
    pub cursor: usize,
    pub message: Option<String>,
}

impl MultiPicker {
    /// `preselected` names, in order, are picked to begin with (those that are not pickable are
    /// left out, with a message).
    pub fn new(title: impl Into<String>, items: Vec<Choice>, preselected: &[String]) -> Self {
        let mut order = Vec::new();
        let mut message = None;
        for name in preselected {
            match items.iter().position(|c| &c.name == name) {
                Some(i) if items[i].error.is_none() => order.push(i),
                _ => message = Some(format!("`{name}` (from the agent's `bottle:`) cannot be used")),
            }
        }
        let cursor = items.iter().position(|c| c.error.is_none()).unwrap_or(0);
        Self { title: title.into(), items, order, cursor, message }
    }

    /// Where `i` stands in the merge order (1-based), when picked.
    pub fn rank(&self, i: usize) -> Option<usize> {
        self.order.iter().position(|&o| o == i).map(|p| p + 1)
    }

    pub fn key(&mut self, key: Key) -> Outcome<Vec<String>> {
        match key {
            Key::Cancel => return Outcome::Cancel,
            Key::Up => {
                if let Some(c) = (0..self.cursor).rev().find(|&c| self.items[c].error.is_none()) {
                    self.cursor = c;
                }
            }
            Key::Down => {
                if let Some(c) = (self.cursor + 1..self.items.len()).find(|&c| self.items[c].error.is_none()) {
                    self.cursor = c;
                }
            }
            Key::Char(' ') if self.items.get(self.cursor).is_some_and(|c| c.error.is_none()) => {
                self.message = None;
                match self.order.iter().position(|&o| o == self.cursor) {
                    Some(p) => {
                        self.order.remove(p);
                    }
                    None => self.order.push(self.cursor),
                }
            }
            Key::Enter => {
                if self.order.is_empty() {
                    self.message = Some("pick at least one bottle (Space)".into());
                } else {
                    return Outcome::Done(self.order.iter().map(|&i| self.items[i].name.clone()).collect());
                }
            }
            _ => {}
        }
        Outcome::Continue
    }
}

/// The bottle's label and colour. The label starts as the suggested slug; the first character
/// typed replaces it. Left/Right choose the colour (or none). Enter checks the label.
#[derive(Debug, Clone)]
pub struct LabelModal {
    pub label: String,
    /// The label is still the suggestion: typing replaces it.
    pub pristine: bool,
    /// Index into [`COLOR_NAMES`], or none.
    pub color: Option<usize>,
    pub error: Option<String>,
}

impl LabelModal {
    pub fn new(suggested: impl Into<String>) -> Self {
        Self { label: suggested.into(), pristine: true, color: None, error: None }
    }

    pub fn color_name(&self) -> Option<&'static str> {
        self.color.map(|i| COLOR_NAMES[i])
    }

    /// `check` says why a label cannot be used (the slug rule, a bottle or state directory that
    /// has it already); the modal stays open with that message.
    pub fn key(
        &mut self,
        key: Key,
        check: impl Fn(&str) -> Result<(), String>,
    ) -> Outcome<(String, Option<&'static str>)> {
        match key {
            Key::Cancel => return Outcome::Cancel,
            Key::Char(c) if !c.is_control() => {
                if self.pristine {
                    self.label.clear();
                    self.pristine = false;
                }
                if self.label.len() + c.len_utf8() <= bottle_core::ids::MAX_LABEL_LEN {
                    self.label.push(c);
                }
                self.error = None;
            }
            Key::Backspace => {
                self.pristine = false;
                self.label.pop();
                self.error = None;
            }
            Key::Right | Key::Down => {
                self.color = match self.color {
                    None => Some(0),
                    Some(i) if i + 1 < COLOR_NAMES.len() => Some(i + 1),
                    Some(_) => None,
                };
            }
            Key::Left | Key::Up => {
                self.color = match self.color {
                    None => Some(COLOR_NAMES.len() - 1),
                    Some(0) => None,
                    Some(i) => Some(i - 1),
                };
            }
            Key::Enter => match check(&self.label) {
                Ok(()) => return Outcome::Done((self.label.clone(), self.color_name())),
                Err(e) => self.error = Some(e),
            },
            _ => {}
        }
        Outcome::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agents() -> Vec<Choice> {
        vec![
            Choice::ok("alpha", "a"),
            Choice::broken("broken", "bad yaml"),
            Choice::ok("beta", "b"),
            Choice::ok("gamma", "g"),
        ]
    }

    fn typed(p: &mut ListPicker, s: &str) {
        for c in s.chars() {
            assert_eq!(p.key(Key::Char(c)), Outcome::Continue);
        }
    }

    #[test]
    fn typing_narrows_the_list_and_enter_picks_the_match() {
        let mut p = ListPicker::new("agent", agents(), true);
        assert_eq!(p.visible().len(), 4);
        typed(&mut p, "MM");
        assert_eq!(p.visible(), [3]);
        assert_eq!(p.key(Key::Enter), Outcome::Done("gamma".into()));
        p.key(Key::Backspace);
        p.key(Key::Backspace);
        typed(&mut p, "zz");
        assert!(p.visible().is_empty());
        assert_eq!(p.key(Key::Enter), Outcome::Continue, "nothing to pick");
        assert_eq!(p.key(Key::Cancel), Outcome::Cancel);
    }

    #[test]
    fn broken_rows_are_skipped_and_never_picked() {
        let mut p = ListPicker::new("agent", agents(), true);
        assert_eq!(p.current().map(|c| c.name.as_str()), Some("alpha"));
        p.key(Key::Down);
        assert_eq!(p.current().map(|c| c.name.as_str()), Some("beta"), "skips `broken`");
        p.key(Key::Up);
        assert_eq!(p.current().map(|c| c.name.as_str()), Some("alpha"));
        p.key(Key::Up);
        assert_eq!(p.current().map(|c| c.name.as_str()), Some("alpha"), "stays at the top");
        typed(&mut p, "broken");
        assert_eq!(p.visible(), [1]);
        assert_eq!(p.key(Key::Enter), Outcome::Continue, "a broken agent cannot be picked");
        let mut only_broken = ListPicker::new("backend", vec![Choice::broken("x", "no")], false);
        assert_eq!(only_broken.key(Key::Enter), Outcome::Continue);
        assert_eq!(only_broken.key(Key::Char('x')), Outcome::Continue, "not filterable");
        assert_eq!(only_broken.filter, "");
    }

    #[test]
    fn bottles_keep_the_order_they_were_picked_in() {
        let items =
            vec![Choice::ok("base", ""), Choice::broken("bad", "e"), Choice::ok("extra", ""), Choice::ok("z", "")];
        let mut p = MultiPicker::new("bottles", items, &["base".to_owned()]);
        assert_eq!(p.rank(0), Some(1));
        p.key(Key::Char(' ')); // base off
        p.key(Key::Down); // skips bad → extra
        assert_eq!(p.cursor, 2);
        p.key(Key::Char(' ')); // extra first
        p.key(Key::Up);
        p.key(Key::Char(' ')); // base second
        assert_eq!((p.rank(2), p.rank(0)), (Some(1), Some(2)));
        assert_eq!(p.key(Key::Enter), Outcome::Done(vec!["extra".into(), "base".into()]));
    }

    #[test]
    fn bottles_need_one_and_broken_ones_are_not_preselected() {
        let items = vec![Choice::broken("bad", "e"), Choice::ok("ok", "")];
        let mut p = MultiPicker::new("bottles", items, &["bad".to_owned()]);
        assert!(p.order.is_empty());
        assert!(p.message.as_deref().is_some_and(|m| m.contains("`bad`")));
        assert_eq!(p.cursor, 1);
        assert_eq!(p.key(Key::Enter), Outcome::Continue);
        assert_eq!(p.message.as_deref(), Some("pick at least one bottle (Space)"));
        p.key(Key::Up);
        assert_eq!(p.cursor, 1, "the broken row cannot be reached");
        assert_eq!(p.key(Key::Cancel), Outcome::Cancel);
    }

    #[test]
    fn the_label_replaces_the_suggestion_and_collisions_reprompt() {
        let check = |l: &str| if l == "taken" { Err(format!("`{l}` is in use")) } else { Ok(()) };
        let mut m = LabelModal::new("demo-abc123");
        assert_eq!(m.key(Key::Enter, check), Outcome::Done(("demo-abc123".into(), None)));
        for c in "taken".chars() {
            m.key(Key::Char(c), check);
        }
        assert_eq!(m.label, "taken", "the first keystroke replaced the suggestion");
        assert_eq!(m.key(Key::Enter, check), Outcome::Continue);
        assert_eq!(m.error.as_deref(), Some("`taken` is in use"));
        m.key(Key::Backspace, check);
        m.key(Key::Char('2'), check);
        assert_eq!(m.error, None);
        m.key(Key::Right, check);
        m.key(Key::Right, check);
        assert_eq!(m.color_name(), Some("red"));
        m.key(Key::Left, check);
        m.key(Key::Left, check);
        assert_eq!(m.color_name(), None);
        m.key(Key::Left, check);
        assert_eq!(m.color_name(), Some("bright-white"));
        assert_eq!(m.key(Key::Enter, check), Outcome::Done(("take2".into(), Some("bright-white"))));
    }

    #[test]
    fn labels_stop_at_64_bytes() {
        let mut m = LabelModal::new("x");
        for _ in 0..70 {
            m.key(Key::Char('a'), |_| Ok(()));
        }
        assert_eq!(m.label.len(), 64);
        m.key(Key::Char('\u{7}'), |_| Ok(()));
        assert_eq!(m.label.len(), 64, "control characters are not typed");
    }
}
