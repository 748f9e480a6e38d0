//! The schedule editor: choose a kind, edit its values as text, see the plan, apply. The form
//! writes a `--schedule` spec, and the spec's own parser says what is wrong, in place.
//!
//! A spec counts epochs from the schedule's own start (multistep's milestones); the form shows
//! and takes the run's epochs instead, as a person reads them off the header, and the spec it
//! writes counts from the epoch the new schedule begins in.

use crossterm::event::{KeyCode, KeyEvent};

use crate::protocol::{Command, Stopping};
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
    /// How the run may end early, under the schedule's fields: early stopping, the target
    /// accuracy, and whether to stop there ([`ENDS`]).
    pub ends: Vec<Field>,
    /// The field being typed in: the schedule's fields, then `ends`.
    pub focus: usize,
    /// Why the spec does not work, when Enter was refused.
    pub error: Option<String>,
    /// The schedule and the rules in force when the editor opened: Enter sends only what
    /// changed (the same schedule again would start it over).
    was: (Option<ScheduleSpec>, Stopping),
}

/// The fields for the rules that end a run early.
const ENDS: [(&str, &str); 3] = [
    ("early stop", "e.g. 5:monitor=val_acc,restore_best, or off"),
    (
        "target %",
        "validation accuracy to forecast, e.g. 91 (none)",
    ),
    ("stop at it", "yes: end the run when it is reached (no)"),
];

fn ends_of(s: &Stopping) -> Vec<Field> {
    let values = [
        s.early_stop.to_string(),
        if s.target_acc > 0.0 {
            s.target_acc.to_string()
        } else {
            String::new()
        },
        if s.stop_at_target { "yes" } else { "no" }.to_string(),
    ];
    ENDS.iter()
        .zip(values)
        .map(|(&(key, hint), value)| Field { key, hint, value })
        .collect()
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

/// The form filled in from a spec whose epochs count from the run's epoch index `origin`.
fn fields_of(spec: &ScheduleSpec, origin: u64) -> Vec<Field> {
    let def = spec.kind.def();
    let mut fields = blank(def);
    let mut set = |key: &str, value: String| {
        if let Some(f) = fields.iter_mut().find(|f| f.key == key) {
            f.value = value;
        }
    };
    for (key, value) in spec.kind.curve().form() {
        let value = match def.run_epochs {
            Some(k) if k == key => shift_list(&value, |e| Some(e + origin)).unwrap_or(value),
            _ => value,
        };
        set(key, value);
    }
    if let Some(w) = spec.warmup {
        set("warmup", w.steps.to_string());
    }
    fields
}

/// A comma-separated list of epochs with each moved by `f`; `None` when an entry is not a
/// whole number or `f` refuses it.
fn shift_list(list: &str, f: impl Fn(u64) -> Option<u64>) -> Option<String> {
    let moved: Option<Vec<String>> = list
        .split(',')
        .map(|e| f(e.trim().parse().ok()?).map(|e| e.to_string()))
        .collect();
    moved.map(|m| m.join(","))
}

impl ScheduleEditor {
    /// The form for the schedule and the rules in force.
    pub fn new(current: Option<&Schedule>, stopping: Stopping) -> Self {
        let spec = current.map(|s| s.spec.clone()).unwrap_or_default();
        let origin = current.map_or(0, |s| s.main_epoch);
        Self {
            kind: KINDS
                .iter()
                .position(|k| k.def.name == spec.name())
                .unwrap_or(0),
            fields: fields_of(&spec, origin),
            ends: ends_of(&stopping),
            focus: 0,
            error: None,
            was: (current.map(|s| s.spec.clone()), stopping),
        }
    }

    /// The rules the form's last fields describe, or what is wrong.
    pub fn stopping(&self) -> Result<Stopping, String> {
        let value = |i: usize| self.ends[i].value.trim().to_string();
        let early_stop = match value(0) {
            v if v.is_empty() => crate::stopping::EarlyStop::OFF,
            v => v.parse::<crate::stopping::EarlyStop>()?,
        };
        let target_acc = match value(1) {
            v if v.is_empty() => 0.0,
            v => crate::stopping::parse_target(&v)?,
        };
        let stop_at_target = match value(2).as_str() {
            "" | "no" | "n" | "off" => false,
            "yes" | "y" | "on" => true,
            v => return Err(format!("stop at it: '{v}' is not yes or no")),
        };
        if stop_at_target && target_acc == 0.0 {
            return Err("stop at it: give a target % to stop at".into());
        }
        Ok(Stopping {
            early_stop,
            target_acc,
            stop_at_target,
        })
    }

    /// The field `i` of the whole form (the schedule's, then the rules').
    fn field_mut(&mut self, i: usize) -> Option<&mut Field> {
        let n = self.fields.len();
        if i < n {
            self.fields.get_mut(i)
        } else {
            self.ends.get_mut(i - n)
        }
    }

    pub fn kind_name(&self) -> &'static str {
        KINDS[self.kind].def.name
    }

    /// The run's epoch index (0-based) in which the form's schedule would begin, after any
    /// warm-up, if applied now: its epochs count from there.
    fn origin(&self, run: &RunState) -> u64 {
        let Some(now) = run.schedule.as_ref() else {
            return 0;
        };
        let warmup = self.value("warmup").parse::<u64>().unwrap_or(0);
        now.epoch_of(run.step + 1 + warmup)
    }

    fn value(&self, key: &str) -> String {
        self.fields
            .iter()
            .find(|f| f.key == key)
            .map(|f| f.value.trim().to_string())
            .unwrap_or_default()
    }

    /// The spec the form describes, as `--schedule` takes it (the run's epochs turned into the
    /// schedule's), or why an epoch cannot be.
    pub fn spec(&self, run: &RunState) -> Result<String, String> {
        let origin = self.origin(run);
        let def = KINDS[self.kind].def;
        if let Some(key) = def.run_epochs {
            let list = self.value(key);
            if !list.is_empty() {
                let typed: Vec<u64> = list
                    .split(',')
                    .filter_map(|e| e.trim().parse::<u64>().ok())
                    .collect();
                if let Some(e) = typed.iter().find(|&&e| e <= origin) {
                    return Err(format!(
                        "epoch {e} has ended: the new schedule begins in epoch {}",
                        origin + 1
                    ));
                }
                let last = run.info.as_ref().map(|i| i.epochs as u64);
                if let Some((e, last)) =
                    last.and_then(|l| Some((*typed.iter().find(|&&e| e >= l)?, l)))
                {
                    return Err(format!(
                        "epoch {e} is at or after the run's last ({last} epochs): a decay after it would never take effect"
                    ));
                }
                if let Some(moved) = shift_list(&list, |e| e.checked_sub(origin)) {
                    return Ok(self.spec_with(|k| {
                        if k == key {
                            moved.clone()
                        } else {
                            self.value(k)
                        }
                    }));
                }
            }
        }
        Ok(self.spec_with(|k| self.value(k)))
    }

    /// The spec as the form reads, its epochs as typed (a run at its start: the same).
    pub fn spec_text(&self) -> String {
        self.spec_with(|k| self.value(k))
    }

    fn spec_with(&self, value: impl Fn(&str) -> String) -> String {
        let kind = self.kind_name();
        let args = KINDS[self.kind].def.args_from(&value);
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
            .spec(run)?
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
        let n = self.fields.len() + self.ends.len();
        match key.code {
            KeyCode::Esc => return Some(vec![]),
            KeyCode::Enter => {
                let checked = self.preview(run).and_then(|_| self.spec(run));
                match checked.and_then(|spec| Ok((spec, self.stopping()?))) {
                    Ok((spec, stopping)) => {
                        let mut commands = Vec::new();
                        let same = spec.parse::<ScheduleSpec>().ok() == self.was.0;
                        if !same {
                            commands.push(Command::SetSchedule(spec));
                        }
                        if stopping != self.was.1 {
                            commands.push(Command::SetStopping(stopping));
                        }
                        return Some(commands);
                    }
                    Err(e) => self.error = Some(e),
                }
            }
            KeyCode::Left | KeyCode::Right => {
                let step = if key.code == KeyCode::Left {
                    KINDS.len() - 1
                } else {
                    1
                };
                self.kind = (self.kind + step) % KINDS.len();
                self.fields = match run.schedule.as_ref() {
                    Some(s) if s.spec.name() == self.kind_name() => {
                        fields_of(&s.spec, s.main_epoch)
                    }
                    _ => blank(KINDS[self.kind].def),
                };
                self.focus = self.focus.min(self.fields.len() + self.ends.len() - 1);
                self.error = None;
            }
            KeyCode::Down | KeyCode::Tab if n > 0 => self.focus = (self.focus + 1) % n,
            KeyCode::Up | KeyCode::BackTab if n > 0 => self.focus = (self.focus + n - 1) % n,
            KeyCode::Backspace => {
                if let Some(f) = self.field_mut(self.focus) {
                    f.value.pop();
                }
                self.error = None;
            }
            KeyCode::Char(c) if !c.is_control() => {
                if let Some(f) = self.field_mut(self.focus) {
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
            let form = ScheduleEditor::new(
                Some(&Schedule::new(spec.clone(), 1e-3, 0, 800, (0, 0), 100)),
                Stopping::default(),
            );
            let back: ScheduleSpec = form
                .spec_text()
                .parse()
                .unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(back, spec, "{s} -> {}", form.spec_text());
        }
        let mut empty = ScheduleEditor::new(None, Stopping::default());
        empty.kind = 1;
        empty.fields = blank(KINDS[1].def);
        assert_eq!(empty.spec_text(), "step");
    }

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::from(c)
    }

    /// A person at epoch 5 of 8 types the run's epochs; the spec counts from the new
    /// schedule's start, and the form shows the run's epochs again when reopened.
    #[test]
    fn milestones_are_the_runs_epochs() {
        let constant = Schedule::new(ScheduleSpec::default(), 1e-3, 0, 800, (0, 0), 100);
        let mut run = RunState {
            info: Some(
                serde_json::from_value(serde_json::json!({
                    "data": "embedded", "model": "m", "param_count": 1, "optimizer": "adamw",
                    "layers": [], "classes": [], "epochs": 8, "steps_per_epoch": 100,
                    "total_steps": 800, "batch_size": 64, "run_dir": "r", "resumed": null,
                    "schedule": constant,
                }))
                .unwrap(),
            ),
            schedule: Some(constant.clone()),
            step: 450,
            ..RunState::default()
        };
        let mut ed = ScheduleEditor::new(Some(&constant), Stopping::default());
        ed.kind = KINDS
            .iter()
            .position(|k| k.def.name == "multistep")
            .unwrap();
        ed.fields = blank(KINDS[ed.kind].def);
        assert_eq!(
            ed.fields[0].hint,
            "decay after these epochs of the run: 3,6,8"
        );
        for c in "5,7".chars() {
            assert_eq!(ed.on_key(key(KeyCode::Char(c)), &run), None);
        }
        assert_eq!(ed.spec(&run).as_deref(), Ok("multistep:1,3"));
        let plan = ed.preview(&run).unwrap();
        // x0.1 after epoch 5 (step 500) and again after epoch 7 (step 700).
        assert_eq!(plan.lr_at(500), 1e-3);
        assert!((plan.lr_at(501) - 1e-4).abs() < 1e-12);
        assert!((plan.lr_at(701) - 1e-5).abs() < 1e-12);
        let sent = ed.on_key(key(KeyCode::Enter), &run).unwrap();
        assert_eq!(sent, vec![Command::SetSchedule("multistep:1,3".into())]);
        // Reopened on the schedule in force: the run's epochs.
        run.schedule = Some(plan.clone());
        assert_eq!(
            ScheduleEditor::new(Some(&plan), Stopping::default()).fields[0].value,
            "5,7"
        );
        // An epoch that has ended is refused in the run's words.
        let mut late = ScheduleEditor::new(Some(&constant), Stopping::default());
        late.kind = ed.kind;
        late.fields = blank(KINDS[ed.kind].def);
        late.fields[0].value = "4,6".into();
        assert_eq!(late.on_key(key(KeyCode::Enter), &run), None);
        assert_eq!(
            late.error.as_deref(),
            Some("epoch 4 has ended: the new schedule begins in epoch 5")
        );
        // After the last epoch's start: the spec's own check, in the run's epochs.
        late.fields[0].value = "6,8".into();
        assert_eq!(
            late.preview(&run).unwrap_err(),
            "epoch 8 is at or after the run's last (8 epochs): a decay after it would never take effect"
        );
    }

    /// The rules' fields: Enter sends what changed and only that (the same schedule again
    /// would start it over); a bad value is said in place.
    #[test]
    fn the_rules_change_without_restarting_the_schedule() {
        let constant = Schedule::new(ScheduleSpec::default(), 1e-3, 0, 800, (0, 0), 100);
        let run = RunState {
            schedule: Some(constant.clone()),
            step: 150,
            ..RunState::default()
        };
        let mut ed = ScheduleEditor::new(Some(&constant), Stopping::default());
        assert_eq!(ed.ends[0].value, "off");
        ed.focus = ed.fields.len();
        for _ in 0..3 {
            ed.on_key(key(KeyCode::Backspace), &run);
        }
        for c in "2:monitor=val_acc".chars() {
            ed.on_key(key(KeyCode::Char(c)), &run);
        }
        ed.on_key(key(KeyCode::Down), &run);
        for c in "91".chars() {
            ed.on_key(key(KeyCode::Char(c)), &run);
        }
        let sent = ed.clone().on_key(key(KeyCode::Enter), &run).unwrap();
        let want = Stopping {
            early_stop: "2:monitor=val_acc".parse().unwrap(),
            target_acc: 91.0,
            stop_at_target: false,
        };
        assert_eq!(sent, vec![Command::SetStopping(want)]);
        ed.on_key(key(KeyCode::Down), &run);
        for _ in 0..2 {
            ed.on_key(key(KeyCode::Backspace), &run);
        }
        for c in "maybe".chars() {
            ed.on_key(key(KeyCode::Char(c)), &run);
        }
        assert_eq!(ed.on_key(key(KeyCode::Enter), &run), None);
        assert_eq!(
            ed.error.as_deref(),
            Some("stop at it: 'maybe' is not yes or no")
        );
    }
}
