//! The keys over the panels, as data: one table says which keys do what, where they work, how
//! the key bar names them and what the help says. Dispatch (`App::on_panel_key`), the key bar,
//! the help overlay and the refusal of a key that does not work here all read it.

use crossterm::event::KeyCode;

/// What a key over the panels does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Bell,
    LrUp,
    LrDown,
    TypeLr,
    Schedule,
    FindLr,
    Augment,
    ClassWeights,
    Samples,
    Clip,
    Classes,
    Remedy,
    TryRemedy,
    Branch,
    KeepMain,
    KeepBranchSave,
    KeepMainSave,
    Undo,
    Probe,
    Pause,
    Resume,
    Step,
    Save,
    Quit,
    Detach,
    FocusNext,
    FocusPrev,
    Enlarge,
    Shrink,
    LossScale,
    AccuracyScale,
    SmoothLess,
    SmoothMore,
    TimeAxis,
    Zoom,
    ScrollUp,
    ScrollDown,
    Help,
}

/// Where a key works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Works {
    /// Whatever the run's state: it changes only the view.
    Always,
    /// While the run is live (running or paused): it steers the run.
    Live,
    /// While the run is live and not paused.
    Running,
    /// While the run is paused.
    Paused,
    /// In a terminal attached to a run of another process.
    Attached,
    /// While a panel fills the screen.
    Enlarged,
    /// While a what-if comparison is over and waits for a line to be kept.
    Deciding,
}

/// What the screen knows that decides whether a key works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    pub live: bool,
    pub paused: bool,
    pub attached: bool,
    pub enlarged: bool,
    /// A what-if comparison waits for a line to be kept.
    pub deciding: bool,
}

impl Works {
    pub fn holds(self, c: Context) -> bool {
        match self {
            Works::Always => true,
            Works::Live => c.live,
            Works::Running => c.live && !c.paused,
            Works::Paused => c.live && c.paused,
            Works::Attached => c.attached,
            Works::Enlarged => c.enlarged,
            Works::Deciding => c.live && c.deciding,
        }
    }
}

/// One key (or a few keys that do the same).
#[derive(Debug, Clone, Copy)]
pub struct Binding {
    pub keys: &'static [KeyCode],
    pub action: Action,
    pub works: Works,
    /// The key bar's entry (keys as shown, word) and its priority there (0 stays longest on a
    /// narrow screen); None for keys the bar leaves to the help.
    pub bar: Option<(&'static str, &'static str, u8)>,
    /// The help's line: the keys as shown, and what they do; None for a key whose line is its
    /// twin's (`-` is on the line of `+`).
    pub help: Option<(&'static str, &'static str)>,
}

use KeyCode::{BackTab, Char, Down, Enter, Esc, Tab, Up, F};

const fn b(
    keys: &'static [KeyCode],
    action: Action,
    works: Works,
    bar: Option<(&'static str, &'static str, u8)>,
    help: Option<(&'static str, &'static str)>,
) -> Binding {
    Binding {
        keys,
        action,
        works,
        bar,
        help,
    }
}

/// Every key over the panels, in the order of the key bar and of the help: the learning rate,
/// the data, the doctor, the run, the view, the session.
#[rustfmt::skip]
pub const BINDINGS: &[Binding] = &[
    b(&[Char('+'), Char('=')], Action::LrUp, Works::Live, Some(("+/-", "lr", 0)),
        Some(("+ / -", "multiply / divide the LR by --lr-step from the next step (a schedule's plan moves with it)"))),
    b(&[Char('-'), Char('_')], Action::LrDown, Works::Live, None, None),
    b(&[Char('l')], Action::TypeLr, Works::Live, Some(("l", "set lr", 1)),
        Some(("l", "type an exact LR for the next step (the schedule goes on from it)"))),
    b(&[Char('e')], Action::Schedule, Works::Live, Some(("e", "schedule", 2)),
        Some(("e", "change the schedule: ←/→ kind, ↑/↓ field, type values; Enter applies the plan shown, Esc cancels"))),
    b(&[Char('f')], Action::FindLr, Works::Live, Some(("f", "find lr", 3)),
        Some(("f", "LR finder: a copy of the model sweeps 1e-7..10; ←/→ pick, Enter uses that LR, Esc discards"))),
    b(&[Char('a')], Action::Augment, Works::Live, Some(("a", "augment", 4)),
        Some(("a", "augmentation off / on from the next batch (--augment, or pad-crop and flip; in the header)"))),
    b(&[Char('w')], Action::ClassWeights, Works::Live, Some(("w", "weights", 6)),
        Some(("w", "class weights off / balanced (inverse class frequency) in the loss from the next step"))),
    b(&[Char('g')], Action::Samples, Works::Live, Some(("g", "samples", 5)),
        Some(("g", "training images as the model sees them; g again for new ones"))),
    b(&[Char('x')], Action::Clip, Works::Live, None,
        Some(("x", "gradient clipping off / on (to the norm of --clip-grad-norm, or 1) from the next step"))),
    b(&[Char('c')], Action::Classes, Works::Always, Some(("c", "classes", 4)),
        Some(("c", "validation accuracy per class, worst marked, with the class counts"))),
    b(&[Char('r')], Action::Remedy, Works::Live, Some(("r", "remedy", 1)),
        Some(("r", "apply the Diagnosis panel's remedy (a restart's: suggested.toml); once while it is on trial"))),
    b(&[Char('R')], Action::TryRemedy, Works::Live, None,
        Some(("R", "try that remedy on a branch first: 200 steps beside the main line, then keep one"))),
    b(&[Char('b')], Action::Branch, Works::Live, Some(("b", "branch", 2)),
        Some(("b", "what-if: fork with a change (menu); both lines train on the same batches; b ends it early"))),
    b(&[Char('m')], Action::KeepMain, Works::Deciding, Some(("m/b", "keep main/branch", 0)),
        Some(("m / b, M / B", "after it: keep the main line / the branch; M, B save the other as a run of its own"))),
    b(&[Char('M')], Action::KeepMainSave, Works::Deciding, None, None),
    b(&[Char('B')], Action::KeepBranchSave, Works::Deciding, None, None),
    b(&[Char('u')], Action::Undo, Works::Live, Some(("u", "undo", 7)),
        Some(("u", "undo that remedy, exactly, within 200 steps (the data goes on)"))),
    b(&[Char('i')], Action::Probe, Works::Live, None,
        Some(("i", "measure activations now (done every 100 steps; dead/sat in Gradients)"))),
    b(&[Char('p'), Char(' ')], Action::Pause, Works::Running, Some(("p", "pause", 0)),
        Some(("p, space", "pause / resume"))),
    b(&[Char('p'), Char(' ')], Action::Resume, Works::Paused, Some(("p", "resume", 0)), None),
    b(&[Char('n')], Action::Step, Works::Paused, Some(("n", "step", 7)),
        Some(("n", "one training step while paused"))),
    b(&[Char('s')], Action::Save, Works::Live, Some(("s", "save", 5)),
        Some(("s", "save a checkpoint now (<run-dir>/checkpoints/last.h5)"))),
    b(&[Tab], Action::FocusNext, Works::Always, Some(("Tab", "focus", 3)),
        Some(("Tab / S-Tab", "move the focus between panels"))),
    b(&[BackTab], Action::FocusPrev, Works::Always, None, None),
    b(&[Enter], Action::Enlarge, Works::Always, Some(("Enter", "enlarge", 3)),
        Some(("Enter", "enlarge the focused panel to the whole screen; Enter or Esc puts it back"))),
    b(&[Esc], Action::Shrink, Works::Enlarged, None, None),
    b(&[Char('y')], Action::LossScale, Works::Always, Some(("y", "log", 6)),
        Some(("y", "loss axis log / linear (at first log when the loss spans more than a decade)"))),
    b(&[Char('%')], Action::AccuracyScale, Works::Always, None,
        Some(("%", "accuracy axis 0-100% / fitted to the data"))),
    b(&[Char('[')], Action::SmoothLess, Works::Always, None,
        Some(("[ / ]", "smooth the training curves less / more (EMA span: raw, 10 ... 500 steps)"))),
    b(&[Char(']')], Action::SmoothMore, Works::Always, None, None),
    b(&[Char('v')], Action::TimeAxis, Works::Always, Some(("v", "axis", 7)),
        Some(("v", "loss and accuracy per step or per epoch"))),
    b(&[Char('z')], Action::Zoom, Works::Always, None,
        Some(("z", "zoom the step charts: whole run, last 2000/500/100 steps"))),
    b(&[Up, Char('k')], Action::ScrollUp, Works::Always, None,
        Some(("Up / Down", "scroll the focused list (gradients, events)"))),
    b(&[Down, Char('j')], Action::ScrollDown, Works::Always, None, None),
    // Said on the line of `?`, which has room for it.
    b(&[Char('!')], Action::Bell, Works::Always, None, None),
    b(&[Char('d')], Action::Detach, Works::Attached, Some(("d", "detach", 2)),
        Some(("d", "detach: the run goes on; candletop attach comes back to it"))),
    b(&[Char('?'), F(1)], Action::Help, Works::Always, Some(("?", "help", 0)),
        Some(("? / !", "this help (any key closes it) / the bell on or off: it rings on a new warning and at the end"))),
    b(&[Char('q'), Char('Q')], Action::Quit, Works::Always, Some(("q", "quit", 0)),
        Some(("q", "quit (asks first while training; Ctrl-C quits at once)"))),
];

/// What a key does here: its action, or why it does nothing here (a line for the event log,
/// empty when nothing needs saying). None: no key of the panels.
pub fn lookup(code: KeyCode, c: Context) -> Option<Result<Action, Refusal>> {
    let mut refused = None;
    for b in BINDINGS.iter().filter(|b| b.keys.contains(&code)) {
        if b.works.holds(c) {
            return Some(Ok(b.action));
        }
        refused.get_or_insert(b);
    }
    let b = refused?;
    let key = match code {
        Char(' ') => "space".to_string(),
        Char(k) => k.to_string(),
        other => format!("{other}"),
    };
    let steering = matches!(b.works, Works::Live | Works::Running | Works::Paused);
    let text = match b.works {
        _ if steering && !c.live => "the run has ended: nothing to steer".to_string(),
        Works::Paused => format!("{key}: {} (p pauses)", b.help.map_or("", |h| h.1)),
        Works::Attached => {
            format!("{key} detaches a terminal attached to a run of another process")
        }
        Works::Deciding if c.live => {
            format!("{key} keeps a line after a what-if comparison (b starts one)")
        }
        Works::Live | Works::Running | Works::Always | Works::Enlarged | Works::Deciding => {
            String::new()
        }
    };
    Some(Err(Refusal { text, steering }))
}

/// Why a key does nothing here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub text: String,
    /// The key steers the run (said as a warning when the run has ended, else as a hint).
    pub steering: bool,
}

/// The key bar's entries for this screen, in order: (keys, word, priority).
pub fn bar(c: Context) -> impl Iterator<Item = (&'static str, &'static str, u8)> {
    BINDINGS
        .iter()
        .filter(move |b| b.works.holds(c))
        .filter_map(|b| b.bar)
}

/// The help's lines for this screen: every key (those that steer too, so a finished run's help
/// still tells what they did), but the attached-only ones only when attached.
pub fn help(c: Context) -> impl Iterator<Item = (&'static str, &'static str)> {
    BINDINGS
        .iter()
        .filter(move |b| b.works != Works::Attached || c.attached)
        .filter_map(|b| b.help)
}
