//! The schedule editor: choose a kind, edit its values as text, see the plan, apply. The form
//! writes a `--schedule` spec, and the spec's own parser says what is wrong, in place.

use crossterm::event::{KeyCode, KeyEvent};

use crate::protocol::Command;
use crate::schedule::{Def, Schedule, ScheduleSpec, SpecError, KINDS};
use crate::watch::RunState;

/// A value in the form: its key in the spec, what it means, and the text typed.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub key: &'static str,
    pub hint: &'static str,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleEditor {
    /// Index into `KINDS`.
    pub kind: usize,
    pub fields: Vec<Field>,
    /// The field being typed in.
    pub focus: usize,
    /// Why the spec does not work, when Enter was refused.
    pub error: Option<String>,
}

/// The fields of `kind`, empty (each kind's defaults apply to what is left empty).
fn blank(kind: &Def) -> Vec<Field> {
    let f = |key, hint| Field {
        key,
        hint,
        value: String::new(),
    };
    let mut fields: Vec<Field> = kind.form.iter().map(|&(key, hint)| f(key, hint)).collect();
    if kind.no_warmup.is_none() {
        fields.push(f("warmup", "steps of linear warm-up first (none)"));
    }
    fields
}

/// The form filled in from a spec.
fn fields_of(spec: &ScheduleSpec) -> Vec<Field> {
    let mut fields = blank(spec.kind.def());
    let mut set = |key: &str, value: String| {
        if let Some(f) = fields.iter_mut().find(|f| f.key == key) {
            f.value = value;
        }
    };
    for (key, value) in spec.kind.curve().form() {
        set(key, value);
    }
    if let Some(w) = spec.warmup {
        set("warmup", w.steps.to_string());
    }
    fields
}

impl ScheduleEditor {
    /// The form for the schedule in force.
    pub fn new(current: Option<&ScheduleSpec>) -> Self {
        let spec = current.cloned().unwrap_or_default();
        Self {
            kind: KINDS
                .iter()
                .position(|k| k.def.name == spec.name())
                .unwrap_or(0),
            fields: fields_of(&spec),
            focus: 0,
            error: None,
        }
    }

    pub fn kind_name(&self) -> &'static str {
        KINDS[self.kind].def.name
    }

    /// The spec the form describes, as `--schedule` takes it.
    pub fn spec_text(&self) -> String {
        let value = |key: &str| {
            self.fields
                .iter()
                .find(|f| f.key == key)
                .map(|f| f.value.trim().to_string())
                .unwrap_or_default()
        };
        let kind = self.kind_name();
        let args = KINDS[self.kind].def.args_from(value);
        let warmup = match value("warmup") {
            w if w.is_empty() => String::new(),
            w => format!("warmup={w}+"),
        };
        if args.is_empty() {
            format!("{warmup}{kind}")
        } else {
            format!("{warmup}{kind}:{args}")
        }
    }

    /// The schedule the form describes, as the trainer would start it now; or what is wrong.
    pub fn preview(&self, run: &RunState) -> Result<Schedule, String> {
        let spec: ScheduleSpec = self
            .spec_text()
            .parse()
            .map_err(|e: SpecError| e.problem())?;
        let now = run.schedule.as_ref().ok_or("the run has not started")?;
        let epochs_left = run
            .info
            .as_ref()
            .map_or(1, |i| (i.epochs + 1).saturating_sub(run.epoch.max(1)));
        spec.check(epochs_left, now.total_steps.saturating_sub(run.step))
            .map_err(|e| e.problem())?;
        Ok(Schedule::new(
            spec,
            now.lr_at(run.step + 1),
            run.step,
            now.total_steps,
            (now.epoch_origin, now.epoch_at_origin),
            now.steps_per_epoch,
        ))
    }

    /// One key; `Some(commands)` when the editor closes (applied or cancelled).
    pub fn on_key(&mut self, key: KeyEvent, run: &RunState) -> Option<Vec<Command>> {
        let n = self.fields.len();
        match key.code {
            KeyCode::Esc => return Some(vec![]),
            KeyCode::Enter => match self.preview(run) {
                Ok(_) => return Some(vec![Command::SetSchedule(self.spec_text())]),
                Err(e) => self.error = Some(e),
            },
            KeyCode::Left | KeyCode::Right => {
                let step = if key.code == KeyCode::Left {
                    KINDS.len() - 1
                } else {
                    1
                };
                self.kind = (self.kind + step) % KINDS.len();
                self.fields = match run.schedule.as_ref() {
                    Some(s) if s.spec.name() == self.kind_name() => fields_of(&s.spec),
                    _ => blank(KINDS[self.kind].def),
                };
                self.focus = 0;
                self.error = None;
            }
            KeyCode::Down | KeyCode::Tab if n > 0 => self.focus = (self.focus + 1) % n,
            KeyCode::Up | KeyCode::BackTab if n > 0 => self.focus = (self.focus + n - 1) % n,
            KeyCode::Backspace => {
                if let Some(f) = self.fields.get_mut(self.focus) {
                    f.value.pop();
                }
                self.error = None;
            }
            KeyCode::Char(c) if !c.is_control() => {
                if let Some(f) = self.fields.get_mut(self.focus) {
                    if f.value.len() < 40 {
                        f.value.push(c);
                    }
                }
                self.error = None;
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_writes_specs_the_parser_reads_back() {
        for s in [
            "constant",
            "step:7:0.5",
            "multistep:3,6:0.5",
            "exp:0.9",
            "cosine:min=1e-5,restart=2,mult=2",
            "onecycle:max=0.01,anneal=linear,momentum=off",
            "plateau:monitor=val_acc,factor=0.5,patience=3",
            "warmup=100+cosine:min=1e-5",
        ] {
            let spec: ScheduleSpec = s.parse().unwrap();
            let form = ScheduleEditor::new(Some(&spec));
            let back: ScheduleSpec = form
                .spec_text()
                .parse()
                .unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(back, spec, "{s} -> {}", form.spec_text());
        }
        let mut empty = ScheduleEditor::new(None);
        empty.kind = 1;
        empty.fields = blank(KINDS[1].def);
        assert_eq!(empty.spec_text(), "step");
    }
}
