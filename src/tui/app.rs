//! The terminal UI's state and its one place of change: events from the trainer and keys from
//! the user go through `App`, which returns the commands for the trainer. Drawing only reads.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::branch_menu::BranchMenu;
use super::editor::ScheduleEditor;
use super::keymap::{self, Action, Context};
use crate::protocol::{Command, Event, LearningRate, LrFinding, StepMetrics, REMEDY_TRIAL_STEPS};
use crate::watch::chart;
use crate::watch::{LogKind, LrFinder, RunState, Status};

/// Another run drawn dimmed under this one's loss, accuracy and LR (`--compare`).
#[derive(Debug, Clone)]
pub struct Comparison {
    /// How the legend names it (its run directory).
    pub name: String,
    pub run: RunState,
}

/// UI settings that come from the command line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UiOptions {
    /// Factor of `+` and `-`.
    pub lr_step: f64,
    pub fps: u32,
    pub color: bool,
    pub braille: bool,
    /// Leave as soon as the run ends (off-screen measurement); a person gets to read the end.
    pub quit_when_done: bool,
    /// The norm `x` clips gradients to when clipping is off.
    pub clip_grad_norm: f64,
    /// Watching a run of another process (`candletop attach`): `d` and a hang-up detach, the
    /// run goes on.
    pub attached: bool,
    /// Ring the terminal's bell on an alert (`--bell`; the key `!` switches it).
    pub bell: bool,
}

impl Default for UiOptions {
    fn default() -> Self {
        Self {
            lr_step: 2.0,
            fps: 12,
            color: true,
            braille: false,
            quit_when_done: false,
            clip_grad_norm: 1.0,
            attached: false,
            bell: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Panel {
    Loss,
    Accuracy,
    Gradients,
    Diagnosis,
    LearningRate,
    Events,
}

impl Panel {
    pub const ALL: [Panel; 6] = [
        Panel::Loss,
        Panel::Accuracy,
        Panel::Gradients,
        Panel::Diagnosis,
        Panel::LearningRate,
        Panel::Events,
    ];

    fn next(self) -> Panel {
        let i = Self::ALL.iter().position(|&p| p == self).unwrap_or(0);
        Self::ALL[(i + 1) % Self::ALL.len()]
    }

    fn prev(self) -> Panel {
        let i = Self::ALL.iter().position(|&p| p == self).unwrap_or(0);
        Self::ALL[(i + Self::ALL.len() - 1) % Self::ALL.len()]
    }
}

/// What sits over the panels.
#[derive(Debug, Clone, PartialEq)]
pub enum Overlay {
    None,
    Help,
    ConfirmQuit,
    LrPrompt {
        input: String,
        error: Option<String>,
    },
    Schedule(ScheduleEditor),
    /// The LR range test: under way, then its curve; `pick` is the point Enter applies.
    Finder {
        pick: Option<usize>,
        /// Whether the run was paused before (it resumes after the finder otherwise).
        was_paused: bool,
    },
    /// Training images as the model sees them.
    Samples,
    /// Validation accuracy per class.
    Classes,
    /// The change a what-if branch tries, and for how long (`b`).
    Branch(BranchMenu),
}

/// The time axis of the loss and accuracy charts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeAxis {
    Steps,
    Epochs,
}

pub struct App {
    pub run: RunState,
    pub options: UiOptions,
    pub focus: Panel,
    pub overlay: Overlay,
    pub axis: TimeAxis,
    /// Steps shown by the step charts: `None` for the whole run, else the last N.
    pub window: Option<u64>,
    /// Lines scrolled up from the newest in the event log; rows scrolled in the gradient table.
    pub log_scroll: usize,
    pub grad_scroll: usize,
    /// The user asked to quit and the trainer was told to stop.
    pub quitting: bool,
    pub should_exit: bool,
    /// An alert came that the bell should ring for; the loop rings it and clears this.
    pub bell_pending: bool,
    /// Seconds since the last step, once a running run has gone quiet for far longer than its
    /// steps take (a frozen or stopped trainer); set by the event loop, which has the clock.
    pub quiet_secs: Option<u64>,
    /// Seconds since the UI started (set by the loop, read by the view).
    pub clock_secs: f64,
    pub compare: Option<Comparison>,
    /// The focused panel fills the screen under the header (Enter, Esc puts it back).
    pub enlarged: bool,
    /// EMA span of the smoothed training curves, in steps (`[` and `]`).
    pub span: u32,
    /// The loss axis as the user chose with `y` (log or not); `None` chooses by the data.
    pub loss_log: Option<bool>,
    /// The accuracy axis from 0 to 100% (`%`) rather than fitted to the data.
    pub accuracy_full: bool,
}

/// How many images `g` asks for: more than fit on most screens (the rest are not drawn).
const SAMPLES_ASKED: u32 = 24;

/// Zoom levels of the step charts, cycled by `z`.
const WINDOWS: [Option<u64>; 4] = [None, Some(2000), Some(500), Some(100)];

impl App {
    pub fn new(options: UiOptions) -> Self {
        Self {
            run: RunState::default(),
            options,
            focus: Panel::Loss,
            overlay: Overlay::None,
            axis: TimeAxis::Steps,
            window: None,
            log_scroll: 0,
            grad_scroll: 0,
            quitting: false,
            should_exit: false,
            bell_pending: false,
            quiet_secs: None,
            clock_secs: 0.0,
            compare: None,
            enlarged: false,
            span: chart::DEFAULT_SPAN,
            loss_log: None,
            accuracy_full: false,
        }
    }

    /// Whether `since` without a step is far longer than this run's steps take: twenty
    /// steps, and at least 15 s (validation at an epoch's end sends no steps either).
    pub fn is_quiet(&self, since: std::time::Duration) -> bool {
        let step_secs = match (&self.run.info, self.run.images_per_sec) {
            (Some(info), ips) if ips > 0.0 => info.batch_size as f64 / ips,
            _ => 0.0,
        };
        self.run.status == Status::Running && since.as_secs_f64() > (20.0 * step_secs).max(15.0)
    }

    /// Folds a step into the run state (the receive loop does this itself).
    pub fn on_step(&mut self, m: &StepMetrics) {
        self.run.on_step(m);
    }

    /// Folds an event into the run state and reacts to it (the receive loop folds, then calls
    /// `after_event`).
    pub fn on_event(&mut self, e: &Event) {
        self.run.on_event(e);
        self.after_event(e);
    }

    /// Leaves once the run is over, if the user asked to quit (or nobody is there to read it).
    pub fn after_event(&mut self, e: &Event) {
        if self.options.bell && e.alert().is_some() {
            self.bell_pending = true;
        }
        if e.is_terminal() && (self.quitting || self.options.quit_when_done) {
            self.should_exit = true;
        }
    }

    /// The trainer's channels closed (the run state already says so).
    pub fn after_trainer_gone(&mut self) {
        if self.quitting || self.options.quit_when_done {
            self.should_exit = true;
        }
    }

    fn notice(&mut self, kind: LogKind, text: impl Into<String>) {
        let step = self.run.step;
        self.run.log(step, kind, text.into());
        self.log_scroll = 0;
    }

    /// Leave the run to go on without this watcher (attached only).
    pub fn detach(&mut self) -> Vec<Command> {
        self.overlay = Overlay::None;
        self.should_exit = true;
        vec![]
    }

    /// Quit now if nothing runs, else stop the trainer and quit when it has finished.
    pub fn quit_confirmed(&mut self) -> Vec<Command> {
        self.overlay = Overlay::None;
        if !self.run.status.is_live() {
            self.should_exit = true;
            return vec![];
        }
        if !self.quitting {
            self.quitting = true;
            self.notice(LogKind::Action, "stopping after the current step");
        }
        vec![Command::Stop]
    }

    /// Handles one key; returns the commands for the trainer.
    pub fn on_key(&mut self, key: KeyEvent) -> Vec<Command> {
        if key.kind == KeyEventKind::Release {
            return vec![];
        }
        if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
            return self.quit_confirmed();
        }
        match std::mem::replace(&mut self.overlay, Overlay::None) {
            Overlay::Help => {
                // Any key closes the help; `q` still quits.
                if key.code == KeyCode::Char('q') {
                    return self.on_key(key);
                }
                vec![]
            }
            Overlay::ConfirmQuit => match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') | KeyCode::Enter => self.quit_confirmed(),
                KeyCode::Char('d') if self.options.attached => self.detach(),
                _ => {
                    self.notice(LogKind::Info, "quit cancelled");
                    vec![]
                }
            },
            Overlay::LrPrompt { mut input, .. } => match key.code {
                KeyCode::Esc => vec![],
                KeyCode::Enter => match LearningRate::parse(&input) {
                    Ok(lr) => vec![Command::SetLr(lr.get())],
                    Err(error) => {
                        self.overlay = Overlay::LrPrompt {
                            input,
                            error: Some(error),
                        };
                        vec![]
                    }
                },
                KeyCode::Backspace => {
                    input.pop();
                    self.overlay = Overlay::LrPrompt { input, error: None };
                    vec![]
                }
                KeyCode::Char(c) if input.len() < 32 && !c.is_control() => {
                    input.push(c);
                    self.overlay = Overlay::LrPrompt { input, error: None };
                    vec![]
                }
                _ => {
                    self.overlay = Overlay::LrPrompt { input, error: None };
                    vec![]
                }
            },
            Overlay::Schedule(mut editor) => match editor.on_key(key, &self.run) {
                Some(commands) => commands,
                None => {
                    self.overlay = Overlay::Schedule(editor);
                    vec![]
                }
            },
            Overlay::Finder { pick, was_paused } => self.on_finder_key(key, pick, was_paused),
            Overlay::Samples => match key.code {
                KeyCode::Char('g' | 'r') | KeyCode::Char('a') if !self.run.status.is_live() => {
                    self.overlay = Overlay::Samples;
                    vec![]
                }
                KeyCode::Char('g' | 'r') => {
                    self.overlay = Overlay::Samples;
                    vec![Command::ShowSamples(SAMPLES_ASKED)]
                }
                KeyCode::Char('a') => {
                    self.overlay = Overlay::Samples;
                    vec![self.toggle_augment(), Command::ShowSamples(SAMPLES_ASKED)]
                }
                KeyCode::Char('q') => {
                    self.overlay = Overlay::ConfirmQuit;
                    vec![]
                }
                _ => vec![],
            },
            Overlay::Classes => match key.code {
                KeyCode::Char('w') if self.run.status.is_live() => {
                    self.overlay = Overlay::Classes;
                    vec![self.toggle_class_weights()]
                }
                KeyCode::Char('q') => {
                    self.overlay = Overlay::ConfirmQuit;
                    vec![]
                }
                KeyCode::Up | KeyCode::Down | KeyCode::Char('w') => {
                    self.overlay = Overlay::Classes;
                    vec![]
                }
                _ => vec![],
            },
            Overlay::Branch(mut menu) => match menu.on_key(key) {
                Some(commands) => commands,
                None => {
                    self.overlay = Overlay::Branch(menu);
                    vec![]
                }
            },
            Overlay::None => self.on_panel_key(key),
        }
    }

    /// Keys over the LR finder: ←/→ pick a point, Enter applies its LR, Esc discards.
    fn on_finder_key(
        &mut self,
        key: KeyEvent,
        pick: Option<usize>,
        was_paused: bool,
    ) -> Vec<Command> {
        let finding = self.run.lr_finder.as_ref().and_then(|f| f.finding.as_ref());
        let n = finding.map_or(0, |f| f.points.len());
        let pick = pick.or(finding.and_then(LrFinding::first_pick));
        let go_on = if was_paused {
            vec![]
        } else {
            vec![Command::Resume]
        };
        let stay = |app: &mut App, pick| {
            app.overlay = Overlay::Finder { pick, was_paused };
            vec![]
        };
        match key.code {
            KeyCode::Esc => go_on,
            KeyCode::Char('q') => {
                self.overlay = Overlay::ConfirmQuit;
                vec![]
            }
            KeyCode::Left | KeyCode::Char('h') => stay(self, pick.map(|p| p.saturating_sub(1))),
            KeyCode::Right | KeyCode::Char('l') => {
                stay(self, pick.map(|p| (p + 1).min(n.saturating_sub(1))))
            }
            KeyCode::Enter => match (finding, pick) {
                (Some(f), Some(p)) if p < n => {
                    let mut cmds = vec![Command::SetLr(f.points[p].lr)];
                    cmds.extend(go_on);
                    cmds
                }
                // Still sweeping, or nothing to apply.
                _ => stay(self, pick),
            },
            _ => stay(self, pick),
        }
    }

    /// What decides which keys work now.
    pub fn key_context(&self) -> Context {
        Context {
            live: self.run.status.is_live(),
            paused: self.run.status == Status::Paused,
            attached: self.options.attached,
            enlarged: self.enlarged,
            deciding: self.run.branch.as_ref().is_some_and(|b| b.awaiting()),
        }
    }

    /// A key over the panels: what the key table says it does here.
    fn on_panel_key(&mut self, key: KeyEvent) -> Vec<Command> {
        let context = self.key_context();
        match keymap::lookup(key.code, context) {
            None => vec![],
            Some(Ok(action)) => self.act(action, context),
            Some(Err(refusal)) => {
                if !refusal.text.is_empty() {
                    let kind = if refusal.steering && !context.live {
                        LogKind::Warning
                    } else {
                        LogKind::Info
                    };
                    self.notice(kind, refusal.text);
                }
                vec![]
            }
        }
    }

    /// Carries out a key's action (the key table has checked that it works here).
    fn act(&mut self, action: Action, context: Context) -> Vec<Command> {
        match action {
            Action::Quit if context.live => {
                self.overlay = Overlay::ConfirmQuit;
                vec![]
            }
            Action::Quit => self.quit_confirmed(),
            Action::Help => {
                self.overlay = Overlay::Help;
                vec![]
            }
            Action::LrUp => vec![Command::ScaleLr(self.options.lr_step)],
            Action::LrDown => vec![Command::ScaleLr(1.0 / self.options.lr_step)],
            Action::TypeLr => {
                self.overlay = Overlay::LrPrompt {
                    input: String::new(),
                    error: None,
                };
                vec![]
            }
            Action::Pause => vec![Command::Pause],
            Action::Resume => vec![Command::Resume],
            Action::Step => vec![Command::Step],
            Action::Save => vec![Command::Save],
            Action::Schedule => {
                let current = self.run.schedule.as_ref();
                let stopping = self
                    .run
                    .info
                    .as_ref()
                    .map(|i| i.stopping)
                    .unwrap_or_default();
                self.overlay = Overlay::Schedule(ScheduleEditor::new(current, stopping));
                vec![]
            }
            Action::FindLr => {
                self.run.lr_finder = Some(LrFinder {
                    done: 0,
                    total: 0,
                    finding: None,
                });
                self.overlay = Overlay::Finder {
                    pick: None,
                    was_paused: context.paused,
                };
                vec![Command::FindLr]
            }
            Action::Augment => vec![self.toggle_augment()],
            Action::ClassWeights => vec![self.toggle_class_weights()],
            Action::Clip => {
                let on = self.run.info.as_ref().map_or(0.0, |i| i.clip_grad_norm);
                let max = if on > 0.0 {
                    0.0
                } else {
                    self.options.clip_grad_norm
                };
                vec![Command::SetClipGradNorm(max)]
            }
            Action::Remedy => self.remedy(),
            Action::TryRemedy => self.try_remedy(),
            Action::Branch => self.branch(context),
            Action::KeepMain => vec![Command::KeepLine {
                branch: false,
                save_other: false,
            }],
            Action::KeepMainSave => vec![Command::KeepLine {
                branch: false,
                save_other: true,
            }],
            Action::KeepBranchSave => vec![Command::KeepLine {
                branch: true,
                save_other: true,
            }],
            Action::Undo => {
                if self.run.undoable().is_some() {
                    vec![Command::UndoRemedy]
                } else {
                    self.notice(
                        LogKind::Info,
                        format!(
                            "u undoes a remedy applied with r, for {REMEDY_TRIAL_STEPS} steps after: none to undo"
                        ),
                    );
                    vec![]
                }
            }
            Action::Probe => vec![Command::ProbeActivations],
            Action::Detach => self.detach(),
            Action::Bell => {
                self.options.bell = !self.options.bell;
                let now = if self.options.bell {
                    "on: it rings on a warning and at the end"
                } else {
                    "off"
                };
                self.notice(LogKind::Action, format!("bell {now}"));
                vec![]
            }
            Action::Samples => {
                self.run.samples = None;
                self.overlay = Overlay::Samples;
                vec![Command::ShowSamples(SAMPLES_ASKED)]
            }
            _ => {
                self.look(action);
                vec![]
            }
        }
    }

    /// The actions that change only what the screen shows.
    fn look(&mut self, action: Action) {
        match action {
            Action::Classes => {
                self.overlay = Overlay::Classes;
            }
            Action::FocusNext => {
                self.focus = self.focus.next();
            }
            Action::FocusPrev => {
                self.focus = self.focus.prev();
            }
            Action::TimeAxis => {
                self.axis = match self.axis {
                    TimeAxis::Steps => TimeAxis::Epochs,
                    TimeAxis::Epochs => TimeAxis::Steps,
                };
            }
            Action::Enlarge => {
                self.enlarged = !self.enlarged;
            }
            Action::Shrink => {
                self.enlarged = false;
            }
            Action::LossScale => {
                self.loss_log = Some(!self.loss_is_log());
            }
            Action::AccuracyScale => {
                self.accuracy_full = !self.accuracy_full;
            }
            Action::SmoothLess | Action::SmoothMore => {
                let spans = chart::SPANS;
                let i = spans
                    .iter()
                    .position(|&s| s >= self.span)
                    .unwrap_or(spans.len() - 1);
                self.span = if action == Action::SmoothLess {
                    spans[i.saturating_sub(1)]
                } else {
                    spans[(i + 1).min(spans.len() - 1)]
                };
            }
            Action::Zoom => {
                let i = WINDOWS.iter().position(|&w| w == self.window).unwrap_or(0);
                self.window = WINDOWS[(i + 1) % WINDOWS.len()];
            }
            Action::ScrollUp => {
                self.scroll(1);
            }
            Action::ScrollDown => {
                self.scroll(-1);
            }
            _ => {}
        }
    }

    /// `r`: the remedy of the finding on top, unless it is already on trial.
    fn remedy(&mut self) -> Vec<Command> {
        match self.run.top_remedy() {
            // The same remedy again while its trial runs would spoil the trial's verdict
            // (and cut twice what one press cut): say so instead.
            Some(r) if self.run.undoable().is_some_and(|t| t.remedy == *r) => {
                let until = self.run.remedy_trial.as_ref().map_or(0, |t| t.1);
                self.notice(
                    LogKind::Info,
                    format!(
                        "{} is on trial until step {until}: u undoes it, - or l change the LR by hand",
                        r.describe()
                    ),
                );
                vec![]
            }
            Some(r) => vec![Command::ApplyRemedy(r.clone())],
            None => {
                self.notice(
                    LogKind::Info,
                    "r applies a finding's remedy: no finding in force has one on a key",
                );
                vec![]
            }
        }
    }

    /// `b`: the branch menu; while a comparison runs, its end now; after it, the branch kept.
    fn branch(&mut self, context: Context) -> Vec<Command> {
        match self.run.branch.as_ref() {
            _ if context.deciding => vec![Command::KeepLine {
                branch: true,
                save_other: false,
            }],
            Some(b) if b.running() => vec![Command::EndBranch],
            _ => {
                self.overlay = Overlay::Branch(BranchMenu::new(&self.run));
                vec![]
            }
        }
    }

    /// `R`: the top finding's remedy on a branch for a remedy's trial, then the user keeps a
    /// line.
    fn try_remedy(&mut self) -> Vec<Command> {
        let Some(r) = self.run.top_remedy() else {
            self.notice(
                LogKind::Info,
                "R tries a finding's remedy on a branch: no finding in force has one on a key",
            );
            return vec![];
        };
        match r.as_change(self.run.lr) {
            Some(change) => vec![Command::Fork {
                change,
                horizon: crate::protocol::Horizon::Steps(REMEDY_TRIAL_STEPS),
                ask: true,
            }],
            None => {
                let text = format!(
                    "R: {} is for a new run, not a branch (r writes it)",
                    r.describe()
                );
                self.notice(LogKind::Info, text);
                vec![]
            }
        }
    }

    /// Augmentation the other way from how it is.
    fn toggle_augment(&self) -> Command {
        let on = self.run.data_facts().is_some_and(|f| f.augmenting);
        Command::SetAugment(!on)
    }

    /// Class weights the other way from how they are.
    fn toggle_class_weights(&self) -> Command {
        let on = self
            .run
            .data_facts()
            .is_some_and(|f| !f.class_weights.is_empty());
        Command::SetClassWeights(!on)
    }

    /// Scrolls the focused list: up (positive) shows older log lines or earlier layers.
    fn scroll(&mut self, up: isize) {
        match self.focus {
            Panel::Events => {
                let max = self.run.log.len().saturating_sub(1);
                self.log_scroll = self.log_scroll.saturating_add_signed(up).min(max);
            }
            Panel::Gradients => {
                let max = self.run.grad_norms.len().saturating_sub(1);
                self.grad_scroll = self.grad_scroll.saturating_add_signed(-up).min(max);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{FinishReason, RunInfo};

    fn key(c: char) -> KeyEvent {
        KeyEvent::from(KeyCode::Char(c))
    }

    fn running() -> App {
        let mut app = App::new(UiOptions::default());
        app.on_event(&Event::Started(RunInfo {
            stopping: Default::default(),
            clip_grad_norm: 0.0,
            data_facts: Default::default(),
            data: "d".into(),
            model: "m".into(),
            param_count: 1,
            optimizer: "o".into(),
            layers: vec![],
            classes: vec![],
            epochs: 1,
            steps_per_epoch: 1,
            total_steps: 1,
            batch_size: 1,
            run_dir: String::new(),
            resumed: None,
            schedule: crate::schedule::Schedule::constant(1e-3, 1, 1),
        }));
        app
    }

    #[test]
    fn keys_become_commands() {
        let mut app = running();
        assert_eq!(app.on_key(key('+')), vec![Command::ScaleLr(2.0)]);
        assert_eq!(app.on_key(key('-')), vec![Command::ScaleLr(0.5)]);
        assert_eq!(app.on_key(key('p')), vec![Command::Pause]);
        app.on_event(&Event::Paused { step: 3 });
        assert_eq!(app.on_key(key(' ')), vec![Command::Resume]);
        assert_eq!(app.on_key(key('n')), vec![Command::Step]);
    }

    #[test]
    fn quit_asks_first_while_running() {
        let mut app = running();
        assert!(app.on_key(key('q')).is_empty());
        assert_eq!(app.overlay, Overlay::ConfirmQuit);
        assert!(app.on_key(key('x')).is_empty(), "any other key cancels");
        assert_eq!(app.overlay, Overlay::None);
        app.on_key(key('q'));
        assert_eq!(app.on_key(key('y')), vec![Command::Stop]);
        assert!(!app.should_exit, "waits for the trainer to finish its step");
        app.on_event(&Event::Finished {
            step: 1,
            epoch: 1,
            reason: FinishReason::Stopped,
            elapsed_secs: 1.0,
        });
        assert!(app.should_exit);
    }

    #[test]
    fn the_bell_rings_on_alerts_when_on_and_the_key_switches_it() {
        let mut app = running();
        let warning = Event::Warning {
            step: 1,
            message: "disk".into(),
        };
        app.on_event(&warning);
        assert!(!app.bell_pending, "off by default");
        app.on_key(key('!'));
        assert_eq!(
            app.run.log.back().unwrap().text,
            "bell on: it rings on a warning and at the end"
        );
        app.on_event(&Event::Paused { step: 1 });
        assert!(!app.bell_pending, "not for a pause");
        app.on_event(&warning);
        assert!(std::mem::take(&mut app.bell_pending));
        app.on_event(&Event::Finished {
            step: 1,
            epoch: 1,
            reason: FinishReason::Completed,
            elapsed_secs: 1.0,
        });
        assert!(std::mem::take(&mut app.bell_pending), "at the end");
        app.on_key(key('!'));
        app.on_event(&warning);
        assert!(!app.bell_pending);
    }

    #[test]
    fn ctrl_c_is_a_confirmed_quit() {
        let mut app = running();
        let cmds = app.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
        assert_eq!(cmds, vec![Command::Stop]);
        assert!(app.quitting);
    }

    #[test]
    fn the_lr_prompt_validates() {
        let mut app = running();
        app.on_key(key('l'));
        for c in "0.003".chars() {
            assert!(app.on_key(key(c)).is_empty());
        }
        assert_eq!(
            app.on_key(KeyEvent::from(KeyCode::Enter)),
            vec![Command::SetLr(0.003)]
        );
        assert_eq!(app.overlay, Overlay::None);
        app.on_key(key('l'));
        for c in "-1".chars() {
            app.on_key(key(c));
        }
        assert!(app.on_key(KeyEvent::from(KeyCode::Enter)).is_empty());
        let Overlay::LrPrompt { error: Some(e), .. } = &app.overlay else {
            panic!("prompt stays open")
        };
        assert!(e.contains("not a positive"), "{e}");
        app.on_key(KeyEvent::from(KeyCode::Esc));
        assert_eq!(app.overlay, Overlay::None);
    }

    #[test]
    fn a_finished_run_quits_at_once_and_refuses_steering() {
        let mut app = running();
        app.on_event(&Event::Finished {
            step: 1,
            epoch: 1,
            reason: FinishReason::Completed,
            elapsed_secs: 1.0,
        });
        assert!(app.on_key(key('+')).is_empty());
        assert!(app
            .run
            .log
            .back()
            .unwrap()
            .text
            .contains("nothing to steer"));
        assert!(app.on_key(key('q')).is_empty());
        assert!(app.should_exit);
    }
}
