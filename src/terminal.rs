//! Reading a secret from the controlling terminal without echo, for `tether hash-password`.
//!
//! Echo is turned off *before* the prompt is written, as `passwd` (Linux-PAM's conversation), OpenSSH's
//! `readpassphrase(3)` and `sudo` do: a prompt written first leaves a window in which what the user types
//! after seeing it is still echoed. Canonical mode and keyboard signals are off too, so the bytes come one
//! by one to [`LineEdit`], a pure line editor (Enter, Backspace, Ctrl-U, Ctrl-C, Ctrl-D), and Ctrl-C cannot
//! kill the process while echo is off. The terminal's settings come back when [`Terminal`] drops, on
//! every path.

use std::fs::File;
use std::io::{self, Read, Write};

use rustix::termios::{self, LocalModes, OptionalActions, SpecialCodeIndex, Termios};

/// The controlling terminal (`/dev/tty`), with echo off until dropped.
pub struct Terminal {
    tty: File,
    saved: Termios,
}

impl Terminal {
    /// Opens `/dev/tty` and turns echo, canonical mode and keyboard signals off.
    pub fn without_echo() -> io::Result<Self> {
        let tty = File::options().read(true).write(true).open("/dev/tty")?;
        let saved = termios::tcgetattr(&tty)?;
        let mut quiet = saved.clone();
        quiet.local_modes.remove(LocalModes::ECHO | LocalModes::ICANON | LocalModes::ISIG);
        // Without canonical mode, a read returns as soon as one byte is there (POSIX `MIN`/`TIME`).
        quiet.special_codes[SpecialCodeIndex::VMIN] = 1;
        quiet.special_codes[SpecialCodeIndex::VTIME] = 0;
        termios::tcsetattr(&tty, OptionalActions::Now, &quiet)?;
        Ok(Self { tty, saved })
    }

    /// Writes `prompt`, reads one line without showing it, then moves to the next line.
    pub fn ask(&mut self, prompt: &str) -> io::Result<String> {
        self.tty.write_all(prompt.as_bytes())?;
        self.tty.flush()?;
        let mut line = LineEdit::default();
        let mut byte = [0u8; 1];
        let outcome = loop {
            if self.tty.read(&mut byte)? == 0 {
                break Step::Eof;
            }
            match line.push(byte[0]) {
                Step::More => {}
                done => break done,
            }
        };
        self.tty.write_all(b"\n")?;
        match outcome {
            Step::Done => Ok(line.into_text()),
            Step::Interrupted => Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted (Ctrl-C)")),
            Step::Eof | Step::More => {
                Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the terminal closed"))
            }
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        // Nothing to do on failure: the terminal is gone or was changed under us.
        let _ = termios::tcsetattr(&self.tty, OptionalActions::Now, &self.saved);
    }
}

/// What one byte did to the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Keep reading.
    More,
    /// Enter: the line is complete.
    Done,
    /// Ctrl-C: give up.
    Interrupted,
    /// Ctrl-D on an empty line, or the end of input: nothing was entered.
    Eof,
}

/// A line typed without echo, edited as a canonical-mode terminal would edit it. Pure: the terminal feeds
/// it bytes, tests feed it byte strings.
#[derive(Debug, Default)]
pub struct LineEdit {
    text: String,
    /// The first bytes of a multi-byte UTF-8 character still being typed.
    partial: Vec<u8>,
}

impl LineEdit {
    /// Takes one byte from the terminal.
    pub fn push(&mut self, byte: u8) -> Step {
        match byte {
            b'\r' | b'\n' => return Step::Done,
            0x03 => return Step::Interrupted,
            0x04 if self.text.is_empty() && self.partial.is_empty() => return Step::Eof,
            // Backspace and DEL remove one character, not one byte.
            0x08 | 0x7f => {
                if self.partial.is_empty() {
                    self.text.pop();
                } else {
                    self.partial.clear();
                }
            }
            // Ctrl-U: kill the line.
            0x15 => {
                self.text.clear();
                self.partial.clear();
            }
            // Other control bytes (Ctrl-D mid-line, escape sequences' ESC) are not part of a password.
            0x00..=0x1f if byte != b'\t' => {}
            _ => self.push_text(byte),
        }
        Step::More
    }

    fn push_text(&mut self, byte: u8) {
        self.partial.push(byte);
        match std::str::from_utf8(&self.partial) {
            Ok(character) => {
                self.text.push_str(character);
                self.partial.clear();
            }
            // A byte that can start no character: dropped, as a terminal shows nothing for it.
            Err(e) if e.error_len().is_some() => self.partial.clear(),
            Err(_) => {}
        }
    }

    /// The line as typed.
    pub fn into_text(self) -> String {
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(bytes: &[u8]) -> (String, Step) {
        let mut line = LineEdit::default();
        for &b in bytes {
            let step = line.push(b);
            if step != Step::More {
                return (line.into_text(), step);
            }
        }
        (line.into_text(), Step::More)
    }

    #[test]
    fn enter_ends_the_line_whether_it_sends_cr_or_lf() {
        assert_eq!(typed(b"Tr0ub4dor&3\r"), ("Tr0ub4dor&3".into(), Step::Done));
        assert_eq!(typed(b"s3cret pass\n"), ("s3cret pass".into(), Step::Done));
        assert_eq!(typed(b"\r"), (String::new(), Step::Done));
    }

    #[test]
    fn backspace_removes_a_whole_character_and_ctrl_u_the_line() {
        assert_eq!(typed(b"abd\x7fc\r"), ("abc".into(), Step::Done));
        assert_eq!(typed(b"ab\x08\x08\x08x\r"), ("x".into(), Step::Done));
        assert_eq!(typed("pä\x7fass\r".as_bytes()), ("pass".into(), Step::Done));
        assert_eq!(typed(b"wrong\x15right\r"), ("right".into(), Step::Done));
    }

    #[test]
    fn utf8_and_tabs_are_kept_other_control_bytes_and_invalid_bytes_are_not() {
        assert_eq!(typed("mötley\tcrüe€\r".as_bytes()), ("mötley\tcrüe€".into(), Step::Done));
        assert_eq!(typed(b"a\x1b[Ab\xffc\r"), ("a[Abc".into(), Step::Done));
    }

    #[test]
    fn ctrl_c_interrupts_and_ctrl_d_ends_only_an_empty_line() {
        assert_eq!(typed(b"half\x03"), ("half".into(), Step::Interrupted));
        assert_eq!(typed(b"\x04").1, Step::Eof);
        assert_eq!(typed(b"ab\x04c\r"), ("abc".into(), Step::Done));
    }
}
