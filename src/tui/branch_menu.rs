//! The `b` menu: the change a what-if branch tries (one of the run's likely next moves, or
//! typed as `key=value`), and how long the comparison lasts. Enter forks the run.

use crossterm::event::{KeyCode, KeyEvent};

use crate::format::sci;
use crate::protocol::{Command, Horizon, Setting, REMEDY_TRIAL_STEPS};
use crate::watch::RunState;

/// How long a comparison lasts, as `←`/`→` cycle through them.
pub const HORIZONS: [Horizon; 5] = [
    Horizon::Epoch,
    Horizon::Steps(50),
    Horizon::Steps(REMEDY_TRIAL_STEPS),
    Horizon::Steps(500),
    Horizon::Open,
];

/// One line of the menu: what it says and the change it makes.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub label: String,
    pub change: Vec<Setting>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BranchMenu {
    pub choices: Vec<Choice>,
    /// The line picked; `choices.len()` is the typed change.
    pub pick: usize,
    pub typed: String,
    pub horizon: usize,
    pub error: Option<String>,
}

impl BranchMenu {
    /// The changes worth trying on this run now.
    pub fn new(run: &RunState) -> Self {
        let lr = run.lr;
        let facts = run.data_facts();
        let augmenting = facts.is_some_and(|f| f.augmenting);
        let weighted = facts.is_some_and(|f| !f.class_weights.is_empty());
        let clipping = run.info.as_ref().is_some_and(|i| i.clip_grad_norm > 0.0);
        let one = |label: String, key: &str, value: String| Choice {
            label,
            change: vec![Setting::new(key, value)],
        };
        let mut choices = Vec::new();
        if let Some(r) = run.top_remedy() {
            if let Some(change) = r.as_change(lr) {
                choices.push(Choice {
                    label: format!("the doctor's remedy: {}", r.describe()),
                    change,
                });
            }
        }
        let suggested = run
            .lr_finder
            .as_ref()
            .and_then(|f| f.finding.as_ref())
            .and_then(|f| f.suggestion.and_then(|i| f.points.get(i)).map(|p| p.lr));
        if let Some(s) = suggested {
            choices.push(one(
                format!("the LR finder's suggestion, {}", sci(s)),
                "lr",
                sci(s),
            ));
        }
        for (words, new) in [("raise the LR x3", lr * 3.0), ("cut the LR /3", lr / 3.0)] {
            choices.push(one(format!("{words}: {}", sci(new)), "lr", sci(new)));
        }
        choices.push(one(
            "cosine decay from here".into(),
            "schedule",
            "cosine".into(),
        ));
        // The switches, each the other way from how it is.
        for (on, key, when_on, when_off) in [
            (
                augmenting,
                "augment",
                ("augmentation off", "off"),
                ("augmentation on", "on"),
            ),
            (
                weighted,
                "class_weights",
                ("class weights off", "none"),
                ("balanced class weights", "balanced"),
            ),
            (
                clipping,
                "clip_grad_norm",
                ("no gradient clipping", "0"),
                ("clip gradients to norm 1", "1"),
            ),
        ] {
            let (label, value) = if on { when_on } else { when_off };
            choices.push(one(label.into(), key, value.into()));
        }
        choices.push(one(
            "label smoothing 0.1".into(),
            "label_smoothing",
            "0.1".into(),
        ));
        choices.push(Choice {
            label: "no change (a control: the curves must match)".into(),
            change: vec![],
        });
        Self {
            choices,
            pick: 0,
            typed: String::new(),
            horizon: 0,
            error: None,
        }
    }

    pub fn horizon(&self) -> Horizon {
        HORIZONS[self.horizon % HORIZONS.len()]
    }

    /// The change picked or typed, or what is wrong with the typed one.
    pub fn change(&self) -> Result<Vec<Setting>, String> {
        match self.choices.get(self.pick) {
            Some(c) => Ok(c.change.clone()),
            None => Setting::parse_change(&self.typed),
        }
    }

    /// A key: `Some(commands)` closes the menu (Enter forks, Esc cancels), `None` keeps it.
    pub fn on_key(&mut self, key: KeyEvent) -> Option<Vec<Command>> {
        let last = self.choices.len();
        self.error = None;
        match key.code {
            KeyCode::Esc => return Some(vec![]),
            KeyCode::Up => self.pick = self.pick.saturating_sub(1),
            KeyCode::Down | KeyCode::Tab => self.pick = (self.pick + 1).min(last),
            KeyCode::Left => self.horizon = (self.horizon + HORIZONS.len() - 1) % HORIZONS.len(),
            KeyCode::Right => self.horizon = (self.horizon + 1) % HORIZONS.len(),
            KeyCode::Enter => match self.change() {
                Ok(change) => {
                    return Some(vec![Command::Fork {
                        change,
                        horizon: self.horizon(),
                        ask: true,
                    }])
                }
                Err(e) => self.error = Some(e),
            },
            KeyCode::Backspace if self.pick == last => {
                self.typed.pop();
            }
            KeyCode::Char(c) if self.pick == last && !c.is_control() && self.typed.len() < 80 => {
                self.typed.push(c);
            }
            // A letter over the list starts the typed change.
            KeyCode::Char(c) if c.is_ascii_lowercase() && self.typed.is_empty() => {
                self.pick = last;
                self.typed.push(c);
            }
            _ => {}
        }
        None
    }
}
