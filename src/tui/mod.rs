//! The live terminal UI: one loop blocks on a crossbeam `select!` over the trainer's events,
//! keyboard input (read on its own thread), signals and a frame tick; state changes go through
//! `App`, drawing reads it. The trainer never waits for any of this.

pub mod app;
pub mod theme;
pub mod view;

use std::io::{self, Write};
use std::time::{Duration, Instant};

use crate::signals::SIGHUP;
use crossbeam_channel::{never, select, tick, unbounded, Receiver};
use crossterm::event::Event as TermEvent;
use crossterm::terminal::{
    self, BeginSynchronizedUpdate, EndSynchronizedUpdate, EnterAlternateScreen,
    LeaveAlternateScreen,
};
use crossterm::{cursor, execute};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;

pub use app::{App, UiOptions};

use crate::headless::Outcome;
use crate::protocol::{Event, MonitorLink, StepMetrics};
use crate::run_state::Status;

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

/// Leaves raw mode and the alternate screen; safe to call more than once and from a panic hook.
pub fn restore_terminal() {
    let _ = terminal::disable_raw_mode();
    let _ = execute!(io::stdout(), LeaveAlternateScreen, cursor::Show);
}

/// Restores the terminal before any panic message is printed, except for panics of the
/// training thread: those are caught there, shown in the UI as the ERROR state, and the UI
/// goes on.
fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name() == Some(crate::train::THREAD_NAME) {
            return;
        }
        restore_terminal();
        previous(info);
    }));
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

fn draw<W: Write>(terminal: &mut Terminal<CrosstermBackend<W>>, app: &App) -> io::Result<()> {
    execute!(terminal.backend_mut(), BeginSynchronizedUpdate)?;
    terminal.draw(|f| f.render_widget(app, f.area()))?;
    execute!(terminal.backend_mut(), EndSynchronizedUpdate)?;
    terminal.backend_mut().flush()
}

/// Runs the UI until the user quits (or a signal or hang-up ends it). The terminal is restored
/// on every way out.
pub fn run(
    monitor: &MonitorLink,
    options: UiOptions,
    signals: Receiver<i32>,
) -> io::Result<Outcome> {
    install_panic_hook();
    terminal::enable_raw_mode()?;
    // No mouse capture: it would break tmux's copy mode and scrolling.
    if let Err(e) = execute!(io::stdout(), EnterAlternateScreen, cursor::Hide) {
        restore_terminal();
        return Err(e);
    }
    let result = Terminal::new(CrosstermBackend::new(io::stdout())).and_then(|mut t| {
        let sources = Sources {
            input: spawn_input(),
            signals,
            watch_tty: true,
        };
        event_loop(&mut t, monitor, options, sources)
    });
    restore_terminal();
    result
}

/// Where the loop's input comes from besides the trainer.
pub struct Sources {
    pub input: Receiver<Input>,
    pub signals: Receiver<i32>,
    /// Check every second whether the terminal hung up.
    pub watch_tty: bool,
}

/// Draws the UI for a run into `out` (a `size` screen) with no keyboard, as the real loop does;
/// returns when the run ends. For measuring what the UI costs: `candletop bench`.
pub fn run_offscreen<W: Write>(
    monitor: &MonitorLink,
    options: UiOptions,
    out: W,
    size: ratatui::layout::Rect,
) -> io::Result<Outcome> {
    let options_fixed = ratatui::TerminalOptions {
        viewport: ratatui::Viewport::Fixed(size),
    };
    let mut t = Terminal::with_options(CrosstermBackend::new(out), options_fixed)?;
    let sources = Sources {
        input: never(),
        signals: never(),
        watch_tty: false,
    };
    let mut options = options;
    options.quit_when_done = true;
    event_loop(&mut t, monitor, options, sources)
}

fn event_loop<W: Write>(
    terminal: &mut Terminal<CrosstermBackend<W>>,
    monitor: &MonitorLink,
    options: UiOptions,
    sources: Sources,
) -> io::Result<Outcome> {
    let mut app = App::new(options);
    let started = Instant::now();
    let Sources {
        input,
        signals,
        watch_tty,
    } = sources;
    let frame = tick(Duration::from_secs_f64(
        1.0 / options.fps.clamp(1, 60) as f64,
    ));
    let mut steps: Receiver<StepMetrics> = monitor.steps.clone();
    let mut events: Receiver<Event> = monitor.events.clone();
    let mut input_rx = input;
    let mut quit_deadline: Option<Instant> = None;
    let mut hung_up = false;
    let mut dirty = true;
    let mut new_steps = false;
    let mut last_check = Instant::now();
    let send = |cmds: Vec<crate::protocol::Command>| {
        for c in cmds {
            let _ = monitor.commands.send(c);
        }
    };
    loop {
        if dirty && !hung_up {
            app.clock_secs = started.elapsed().as_secs_f64();
            if draw(terminal, &app).is_err() {
                hung_up = true; // writing to the terminal failed: it is gone
            }
            dirty = false;
        }
        if hung_up && quit_deadline.is_none() {
            send(app.quit_confirmed());
            quit_deadline = Some(Instant::now() + HANGUP_GRACE);
        }
        if app.quitting && quit_deadline.is_none() {
            quit_deadline = Some(Instant::now() + STOP_GRACE);
        }
        if app.should_exit || quit_deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        select! {
            recv(steps) -> m => match m {
                Ok(m) => {
                    app.on_step(&m);
                    // Coalesce a burst: fold everything waiting, draw once at the next tick.
                    for m in steps.try_iter() {
                        app.on_step(&m);
                    }
                    new_steps = true;
                }
                Err(_) => steps = never(),
            },
            recv(events) -> e => match e {
                Ok(e) => {
                    // Steps sent before this event are folded before it.
                    if !matches!(e, Event::Started(_)) {
                        for m in steps.try_iter() {
                            app.on_step(&m);
                        }
                    }
                    app.on_event(&e);
                    dirty = true;
                }
                Err(_) => {
                    events = never();
                    app.on_trainer_gone();
                    dirty = true;
                }
            },
            recv(input_rx) -> i => match i {
                Ok(Input::Term(TermEvent::Key(k))) => {
                    send(app.on_key(k));
                    dirty = true;
                }
                Ok(Input::Term(TermEvent::Resize(_, _))) => {
                    terminal.autoresize()?;
                    dirty = true;
                }
                Ok(Input::Term(_)) => {}
                Ok(Input::Closed) | Err(_) => {
                    input_rx = never();
                    hung_up = true;
                }
            },
            recv(signals) -> s => match s {
                Ok(SIGHUP) => hung_up = true,
                Ok(_) => {
                    send(app.quit_confirmed());
                    dirty = true;
                }
                Err(_) => {}
            },
            recv(frame) -> _ => {
                // New steps only mark the state; the screen follows at the frame rate.
                dirty |= std::mem::take(&mut new_steps);
                if last_check.elapsed() >= Duration::from_secs(1) {
                    last_check = Instant::now();
                    if watch_tty && terminal_gone() {
                        hung_up = true;
                    }
                }
            },
        }
    }
    Ok(match &app.run.status {
        Status::Error(m) => Outcome::Failed(m.clone()),
        Status::Finished(r) => Outcome::Finished(*r),
        _ => Outcome::Finished(crate::protocol::FinishReason::Stopped),
    })
}
