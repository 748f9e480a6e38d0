//! The live terminal UI. It runs on the receive loop every front end shares (`watch`), with
//! keyboard input read on its own thread and a frame tick: state changes go through `App`,
//! drawing reads it (`view`), at the frame rate and only when something changed. The trainer
//! never waits for any of this.

pub mod app;
pub mod branch_menu;
pub mod editor;
pub mod keymap;
pub mod theme;
pub mod view;
pub mod widgets;

use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{tick, unbounded, Receiver};
use crossterm::event::Event as TermEvent;
use crossterm::terminal::{
    self, BeginSynchronizedUpdate, EndSynchronizedUpdate, EnterAlternateScreen,
    LeaveAlternateScreen,
};
use crossterm::{cursor, execute};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;

pub use app::{App, Comparison, UiOptions};

use crate::protocol::{Command, Event, MonitorLink, StepMetrics};
use crate::signals::SIGHUP;
use crate::watch::{self, FrontEnd, Outcome, RunState, Sources};

/// How long a stop may take (the current step, then the trainer's last words) before the UI
/// leaves anyway.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// After a hang-up nobody is watching: leave sooner.
const HANGUP_GRACE: Duration = Duration::from_secs(3);

pub enum Input {
    Term(TermEvent),
    /// The terminal went away (read error).
    Closed,
}

/// What `widget` draws on a `width` x `height` screen, as lines of text (for printing a chart
/// where there is no terminal UI, e.g. `candletop lr-find`).
pub fn text_of(widget: impl ratatui::widgets::Widget, width: u16, height: u16) -> Vec<String> {
    let area = ratatui::layout::Rect::new(0, 0, width, height);
    let mut buf = ratatui::buffer::Buffer::empty(area);
    widget.render(area, &mut buf);
    (0..height)
        .map(|y| {
            let row: String = (0..width)
                .map(|x| buf[(x, y)].symbol().to_string())
                .collect();
            row.trim_end().to_string()
        })
        .collect()
}

/// Leaves raw mode and the alternate screen; safe to call more than once and from a panic hook.
pub fn restore_terminal() {
    let _ = terminal::disable_raw_mode();
    let _ = execute!(io::stdout(), LeaveAlternateScreen, cursor::Show);
}

type PanicHook = Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send + 'static>;

/// While the UI owns the terminal: a panic on the UI thread restores the terminal before its
/// message is printed; a panic on any other thread (the trainer's is caught there and shown as
/// the ERROR state) is kept and printed once the terminal is restored, instead of scribbling
/// over the screen. Dropping the guard puts the previous hook back and prints what was kept.
struct PanicGuard {
    previous: Arc<PanicHook>,
    kept: Arc<Mutex<Vec<String>>>,
}

impl PanicGuard {
    fn install() -> Self {
        let previous: Arc<PanicHook> = Arc::new(std::panic::take_hook());
        let kept = Arc::new(Mutex::new(Vec::new()));
        let ui = std::thread::current().id();
        let (prev, keep) = (previous.clone(), kept.clone());
        std::panic::set_hook(Box::new(move |info| {
            let me = std::thread::current();
            if me.id() == ui {
                restore_terminal();
                prev(info);
            } else {
                let name = me.name().unwrap_or("<unnamed>").to_string();
                if let Ok(mut k) = keep.lock() {
                    k.push(format!("thread '{name}' {info}"));
                }
            }
        }));
        Self { previous, kept }
    }
}

impl Drop for PanicGuard {
    fn drop(&mut self) {
        let prev = self.previous.clone();
        std::panic::set_hook(Box::new(move |info| prev(info)));
        if let Ok(kept) = self.kept.lock() {
            for m in kept.iter() {
                eprintln!("{m}");
            }
        }
    }
}

/// True when the controlling terminal has hung up (POLLHUP/POLLERR on stdin or stdout).
/// crossterm's reader can spin once the tty is gone (crossterm issue #793), so the loop checks
/// this itself rather than waiting for the reader to report it.
fn terminal_gone() -> bool {
    let mut fds = [
        libc::pollfd {
            fd: 0,
            events: 0,
            revents: 0,
        },
        libc::pollfd {
            fd: 1,
            events: 0,
            revents: 0,
        },
    ];
    // SAFETY: `fds` is a valid array of two pollfd structs for the duration of the call.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
    n > 0
        && fds
            .iter()
            .any(|f| f.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0)
}

fn spawn_input() -> Receiver<Input> {
    let (tx, rx) = unbounded();
    let _ = std::thread::Builder::new()
        .name("candletop-input".into())
        .spawn(move || loop {
            let msg = match crossterm::event::read() {
                Ok(e) => Input::Term(e),
                Err(_) => Input::Closed,
            };
            let closed = matches!(msg, Input::Closed);
            if tx.send(msg).is_err() || closed {
                return;
            }
        });
    rx
}

/// Runs the UI until the user quits (or a signal or hang-up ends it). The terminal is restored
/// on every way out.
pub fn run(
    monitor: &MonitorLink,
    options: UiOptions,
    signals: Receiver<i32>,
    initial: Option<crate::watch::RunState>,
    compare: Option<Comparison>,
) -> io::Result<Outcome> {
    let panics = PanicGuard::install();
    terminal::enable_raw_mode()?;
    // No mouse capture: it would break tmux's copy mode and scrolling.
    if let Err(e) = execute!(io::stdout(), EnterAlternateScreen, cursor::Hide) {
        restore_terminal();
        return Err(e);
    }
    let result = Terminal::new(CrosstermBackend::new(io::stdout())).map(|terminal| {
        let mut screen = Screen::new(terminal, options, true);
        if let Some(state) = initial {
            screen.app.run = state;
        }
        screen.app.compare = compare;
        let sources = Sources {
            input: spawn_input(),
            signals,
            tick: screen.frame_tick(),
        };
        watch::watch(&mut screen, monitor, sources)
    });
    restore_terminal();
    drop(panics);
    result
}

/// Draws the UI for a run into `out` (a `size` screen) with no keyboard, as the real loop does,
/// from `initial` (an attached watcher's snapshot) or from nothing; returns when the run ends.
/// For measuring what the UI costs: `candletop bench`.
pub fn run_offscreen<W: Write>(
    monitor: &MonitorLink,
    mut options: UiOptions,
    out: W,
    size: ratatui::layout::Rect,
    initial: Option<RunState>,
) -> io::Result<Outcome> {
    let fixed = ratatui::TerminalOptions {
        viewport: ratatui::Viewport::Fixed(size),
    };
    let terminal = Terminal::with_options(CrosstermBackend::new(out), fixed)?;
    options.quit_when_done = true;
    let mut screen = Screen::new(terminal, options, false);
    if let Some(state) = initial {
        screen.app.run = state;
    }
    let sources = Sources {
        tick: screen.frame_tick(),
        ..Sources::none()
    };
    Ok(watch::watch(&mut screen, monitor, sources))
}

/// The terminal UI as a front end: the app state, the terminal it draws on, and when to draw.
struct Screen<W: Write> {
    app: App,
    terminal: Terminal<CrosstermBackend<W>>,
    /// Something changed that the next draw must show.
    dirty: bool,
    /// Steps arrived since the last frame (drawn at the frame rate, not per step).
    new_steps: bool,
    last_step: Instant,
    hung_up: bool,
    quit_deadline: Option<Instant>,
    /// Check every second whether the terminal hung up.
    watch_tty: bool,
    last_check: Instant,
    started: Instant,
}

impl<W: Write> Screen<W> {
    fn new(terminal: Terminal<CrosstermBackend<W>>, options: UiOptions, watch_tty: bool) -> Self {
        Self {
            app: App::new(options),
            terminal,
            dirty: true,
            new_steps: false,
            last_step: Instant::now(),
            hung_up: false,
            quit_deadline: None,
            watch_tty,
            last_check: Instant::now(),
            started: Instant::now(),
        }
    }

    fn frame_tick(&self) -> Receiver<Instant> {
        tick(Duration::from_secs_f64(
            1.0 / self.app.options.fps.clamp(1, 60) as f64,
        ))
    }

    fn draw(&mut self) -> io::Result<()> {
        self.app.clock_secs = self.started.elapsed().as_secs_f64();
        let t = &mut self.terminal;
        execute!(t.backend_mut(), BeginSynchronizedUpdate)?;
        t.draw(|f| f.render_widget(&self.app, f.area()))?;
        execute!(t.backend_mut(), EndSynchronizedUpdate)?;
        if std::mem::take(&mut self.app.bell_pending) {
            t.backend_mut().write_all(b"\x07")?;
        }
        t.backend_mut().flush()
    }
}

impl<W: Write> FrontEnd for Screen<W> {
    type Input = Input;

    fn state(&mut self) -> &mut RunState {
        &mut self.app.run
    }

    fn on_step(&mut self, _m: &StepMetrics) {
        self.new_steps = true;
        self.last_step = Instant::now();
    }

    fn on_event(&mut self, e: &Event) {
        self.app.after_event(e);
        self.dirty = true;
    }

    fn on_trainer_gone(&mut self) {
        self.app.after_trainer_gone();
        self.dirty = true;
    }

    fn on_input(&mut self, input: Input) -> Vec<Command> {
        match input {
            Input::Term(TermEvent::Key(k)) => {
                self.dirty = true;
                self.app.on_key(k)
            }
            Input::Term(TermEvent::Resize(_, _)) => {
                if self.terminal.autoresize().is_err() {
                    self.hung_up = true;
                }
                self.dirty = true;
                Vec::new()
            }
            Input::Term(_) => Vec::new(),
            Input::Closed => {
                self.hung_up = true;
                Vec::new()
            }
        }
    }

    fn on_signal(&mut self, signal: i32) -> Vec<Command> {
        if signal == SIGHUP {
            self.hung_up = true;
            return Vec::new();
        }
        self.dirty = true;
        self.app.quit_confirmed()
    }

    fn on_tick(&mut self) {
        // New steps only mark the state; the screen follows at the frame rate.
        self.dirty |= std::mem::take(&mut self.new_steps);
        if self.last_check.elapsed() >= Duration::from_secs(1) {
            self.last_check = Instant::now();
            let since = self.last_step.elapsed();
            let quiet = self.app.is_quiet(since).then_some(since.as_secs());
            self.dirty |= quiet != self.app.quiet_secs;
            self.app.quiet_secs = quiet;
            if self.watch_tty && terminal_gone() {
                self.hung_up = true;
            }
        }
    }

    fn before_wait(&mut self) -> Vec<Command> {
        if self.dirty && !self.hung_up {
            if self.draw().is_err() {
                self.hung_up = true; // writing to the terminal failed: it is gone
            }
            self.dirty = false;
        }
        let mut commands = Vec::new();
        // A watcher of another process's run detaches when its terminal goes.
        if self.hung_up && self.app.options.attached {
            self.app.detach();
        } else if self.hung_up && self.quit_deadline.is_none() {
            commands = self.app.quit_confirmed();
            self.quit_deadline = Some(Instant::now() + HANGUP_GRACE);
        }
        if self.app.quitting && self.quit_deadline.is_none() {
            self.quit_deadline = Some(Instant::now() + STOP_GRACE);
        }
        commands
    }

    fn done(&mut self) -> bool {
        self.app.should_exit || self.quit_deadline.is_some_and(|d| Instant::now() >= d)
    }
}
