//! The socket protocol: newline-delimited JSON, one message per line, at most `MAX_FRAME`
//! bytes. The server speaks first (`hello` with its protocol version), the watcher answers with
//! its own `hello`; then the server sends the run as it is (`snapshot`) and every step and event
//! after it, and the watcher sends commands. A message the other side cannot take gets an
//! `error` reply and is dropped; the connection stays.

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

use crate::protocol::{Command, Event, StepMetrics};
use crate::watch::RunState;

/// Bumped whenever a message changes shape.
pub const PROTOCOL_VERSION: u32 = 1;

/// The longest line either side reads (a snapshot excepted: it is the server's to send).
pub const MAX_FRAME: usize = 64 * 1024;

/// What the server (the training process) sends. Events are rare next to steps, so the size of
/// the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    Hello {
        protocol: u32,
        /// The run directory: the run's identity.
        run_dir: String,
        pid: u32,
    },
    /// The run as the server knows it, before the live messages.
    Snapshot {
        state: Box<RunState>,
    },
    Step {
        metrics: StepMetrics,
    },
    Event {
        event: Event,
    },
    /// The watcher's last message was refused, and why.
    Error {
        message: String,
    },
}

/// What a watcher sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    Hello { protocol: u32 },
    Command { command: Command },
}

/// Writes one message as a line.
pub fn write_msg<W: Write, T: Serialize>(out: &mut W, msg: &T) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    line.push(b'\n');
    out.write_all(&line)?;
    out.flush()
}

/// One line read, within `limit` bytes.
#[derive(Debug, PartialEq)]
pub enum Frame {
    Line(Vec<u8>),
    /// Longer than the limit: skipped up to its end.
    TooLong,
    /// The other side closed the connection.
    Closed,
}

/// Reads the next line, never holding more than `limit` bytes of it.
pub fn read_frame<R: BufRead>(input: &mut R, limit: usize) -> std::io::Result<Frame> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            return Ok(if line.is_empty() && !too_long {
                Frame::Closed
            } else if too_long {
                Frame::TooLong
            } else {
                Frame::Line(line)
            });
        }
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        if !too_long {
            if line.len() + chunk.len() > limit {
                too_long = true;
                line.clear();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let used = done.unwrap_or(buf.len());
        input.consume(used);
        if done.is_some() {
            return Ok(if too_long {
                Frame::TooLong
            } else {
                Frame::Line(line)
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lines_within_the_limit_come_whole_longer_ones_are_skipped() {
        let mut input: &[u8] = b"{\"a\":1}\nxxxxxxxxxxxxxxxxxxxx\n{\"b\":2}\npartial";
        let limit = 10;
        assert_eq!(
            read_frame(&mut input, limit).unwrap(),
            Frame::Line(b"{\"a\":1}".to_vec())
        );
        assert_eq!(read_frame(&mut input, limit).unwrap(), Frame::TooLong);
        assert_eq!(
            read_frame(&mut input, limit).unwrap(),
            Frame::Line(b"{\"b\":2}".to_vec())
        );
        assert_eq!(
            read_frame(&mut input, limit).unwrap(),
            Frame::Line(b"partial".to_vec())
        );
        assert_eq!(read_frame(&mut input, limit).unwrap(), Frame::Closed);
    }

    #[test]
    fn messages_survive_the_wire() {
        let msg = ClientMsg::Command {
            command: Command::ScaleLr(2.0),
        };
        let mut out = Vec::new();
        write_msg(&mut out, &msg).unwrap();
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "{\"type\":\"command\",\"command\":{\"command\":\"scale_lr\",\"value\":2.0}}\n"
        );
        let Frame::Line(line) = read_frame(&mut out.as_slice(), MAX_FRAME).unwrap() else {
            panic!()
        };
        assert_eq!(serde_json::from_slice::<ClientMsg>(&line).unwrap(), msg);
    }

    proptest! {
        /// Any bytes: lines or skips, never a panic, never more than the limit held.
        #[test]
        fn any_bytes_read_as_frames(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let mut input = bytes.as_slice();
            loop {
                match read_frame(&mut input, 100).unwrap() {
                    Frame::Line(l) => {
                        prop_assert!(l.len() <= 100);
                        let _ = serde_json::from_slice::<ClientMsg>(&l);
                    }
                    Frame::TooLong => {}
                    Frame::Closed => break,
                }
            }
        }
    }
}
