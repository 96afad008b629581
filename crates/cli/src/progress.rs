//! The progress display of `registro rebuild`: on a terminal, one line redrawn in place with a
//! bar, the events done, the rate and the time left; otherwise (a log file, a pipe) a plain line
//! every few seconds, at the swap and at the end.

use std::io::Write;
use std::time::{Duration, Instant};

use registro_projector::{Progress, Stage};

/// How often a terminal's line is redrawn at most.
const REDRAW: Duration = Duration::from_millis(100);
/// How often a plain line is written at most while building.
const PLAIN_EVERY: Duration = Duration::from_secs(5);
/// The bar's width, in characters.
const BAR: u64 = 24;

/// Shows the progress of one rebuild on `out` (standard error).
#[derive(Debug)]
pub struct Display<W: Write> {
    name: String,
    /// A transfer (export, import) rather than a rebuild: no "rebuild" and no swap in its
    /// plain lines.
    transfer: bool,
    terminal: bool,
    out: W,
    /// When the last line was written, and at which stage.
    last: Option<(Instant, Stage)>,
}

impl<W: Write> Display<W> {
    /// A display of the rebuild of `name`: redrawn in place when `terminal`.
    pub fn new(name: &str, terminal: bool, out: W) -> Self {
        Self {
            name: name.to_owned(),
            transfer: false,
            terminal,
            out,
            last: None,
        }
    }

    /// The display of an export or import of `name`.
    pub fn transfer(name: &str, terminal: bool, out: W) -> Self {
        Self {
            transfer: true,
            ..Self::new(name, terminal, out)
        }
    }

    /// Shows `progress`, reported at `now`, if it is time to: always at a new stage and at the
    /// end, otherwise at most every [`REDRAW`] on a terminal and every [`PLAIN_EVERY`] elsewhere.
    /// A display that cannot be written is given up silently: the rebuild matters more.
    pub fn show(&mut self, progress: &Progress, now: Instant) {
        let every = if self.terminal { REDRAW } else { PLAIN_EVERY };
        let due = match self.last {
            None => true,
            Some((at, stage)) => stage != progress.stage || now.duration_since(at) >= every,
        };
        if !due {
            return;
        }
        self.last = Some((now, progress.stage));
        let written = if self.terminal {
            let end = if progress.stage == Stage::Done {
                "\n"
            } else {
                ""
            };
            // Back to the start of the line, and clear it.
            write!(self.out, "\r\x1b[2K{}{end}", bar_line(&self.name, progress))
        } else {
            let line = if self.transfer {
                transfer_line(&self.name, progress)
            } else {
                plain_line(&self.name, progress)
            };
            writeln!(self.out, "{line}")
        };
        let _ = written.and_then(|()| self.out.flush());
    }

    /// Ends a line left open on a terminal (the rebuild failed half-way), so that what follows
    /// starts on a line of its own.
    pub fn interrupt(&mut self) {
        if self.terminal && self.last.is_some_and(|(_, stage)| stage != Stage::Done) {
            let _ = writeln!(self.out).and_then(|()| self.out.flush());
        }
    }

    /// The writer, for tests.
    #[cfg(test)]
    fn into_inner(self) -> W {
        self.out
    }
}

/// The terminal's line: `audit [#########...............]  37.5%  300/800 events  150/s  ETA 3s`.
pub fn bar_line(name: &str, p: &Progress) -> String {
    let filled = p.permille() * BAR / 1000;
    let bar: String = (0..BAR)
        .map(|i| if i < filled { '#' } else { '.' })
        .collect();
    let tail = match p.stage {
        Stage::Building => format!(
            "{}/s  ETA {}",
            p.rate(),
            p.remaining().map_or_else(|| "?".to_owned(), duration)
        ),
        Stage::Swapping => "swapping in".to_owned(),
        Stage::Done => format!("done in {}", elapsed(p.elapsed)),
    };
    format!(
        "{name} [{bar}] {:>6}  {}/{} events  {tail}",
        percent(p),
        p.done,
        p.total
    )
}

/// A plain line: `rebuild audit: 300/800 events (37.5%), 150 events/s, about 3s left`.
pub fn plain_line(name: &str, p: &Progress) -> String {
    let head = format!(
        "rebuild {name}: {}/{} events ({})",
        p.done,
        p.total,
        percent(p)
    );
    match p.stage {
        Stage::Building => match p.remaining() {
            Some(left) => format!(
                "{head}, {} events/s, about {} left",
                p.rate(),
                duration(left)
            ),
            None => format!("{head}, starting"),
        },
        Stage::Swapping => format!("{head}, swapping the new rows in"),
        Stage::Done => format!("{head}, swapped in after {}", elapsed(p.elapsed)),
    }
}

/// A plain line of an export or import: `export: 300/800 events (37.5%), 150 events/s, about
/// 3s left`, and at the end `export: 800/800 events (100.0%), done in 5.4s`.
pub fn transfer_line(name: &str, p: &Progress) -> String {
    let line = plain_line(name, p);
    let line = line.strip_prefix("rebuild ").unwrap_or(&line).to_owned();
    match p.stage {
        Stage::Done => format!(
            "{name}: {}/{} events ({}), done in {}",
            p.done,
            p.total,
            percent(p),
            elapsed(p.elapsed)
        ),
        Stage::Building | Stage::Swapping => line,
    }
}

/// `37.5%`, from the thousandths done.
fn percent(p: &Progress) -> String {
    let permille = p.permille();
    format!("{}.{}%", permille / 10, permille % 10)
}

/// A time left, to the second: `0s`, `42s`, `3m05s`, `2h07m`.
pub fn duration(d: Duration) -> String {
    // Rounded up: "0s left" only at the end.
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// A time taken: to the tenth of a second under a minute (`2.3s`), as [`duration`] beyond.
pub fn elapsed(d: Duration) -> String {
    if d < Duration::from_secs(60) {
        let tenths = d.as_millis() / 100;
        format!("{}.{}s", tenths / 10, tenths % 10)
    } else {
        duration(Duration::from_secs(d.as_secs()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use registro_store::Position;

    fn at(stage: Stage, done: u64, total: u64, ms: u64) -> Progress {
        Progress {
            stage,
            done,
            total,
            elapsed: Duration::from_millis(ms),
            position: Position { tx: 0, id: done },
        }
    }

    #[test]
    fn an_export_or_import_line_speaks_of_neither_rebuild_nor_swap() {
        assert_eq!(
            transfer_line("export", &at(Stage::Building, 200, 800, 1000)),
            "export: 200/800 events (25.0%), 200 events/s, about 3s left"
        );
        assert_eq!(
            transfer_line("import", &at(Stage::Done, 800, 800, 5432)),
            "import: 800/800 events (100.0%), done in 5.4s"
        );
    }

    #[test]
    fn the_bar_shows_the_part_done_the_rate_and_the_time_left() {
        assert_eq!(
            bar_line("audit", &at(Stage::Building, 300, 800, 2000)),
            "audit [#########...............]  37.5%  300/800 events  150/s  ETA 4s"
        );
        assert_eq!(
            bar_line("audit", &at(Stage::Building, 0, 800, 0)),
            "audit [........................]   0.0%  0/800 events  0/s  ETA ?"
        );
        assert_eq!(
            bar_line("audit", &at(Stage::Swapping, 800, 800, 5000)),
            "audit [########################] 100.0%  800/800 events  swapping in"
        );
        assert_eq!(
            bar_line("audit", &at(Stage::Done, 800, 800, 5432)),
            "audit [########################] 100.0%  800/800 events  done in 5.4s"
        );
        // An empty log is all done.
        assert_eq!(
            bar_line("family", &at(Stage::Done, 0, 0, 12)),
            "family [########################] 100.0%  0/0 events  done in 0.0s"
        );
    }

    #[test]
    fn a_plain_line_says_the_same_in_words() {
        assert_eq!(
            plain_line("audit", &at(Stage::Building, 0, 800, 0)),
            "rebuild audit: 0/800 events (0.0%), starting"
        );
        assert_eq!(
            plain_line("audit", &at(Stage::Building, 200, 800, 1000)),
            "rebuild audit: 200/800 events (25.0%), 200 events/s, about 3s left"
        );
        assert_eq!(
            plain_line("audit", &at(Stage::Swapping, 800, 800, 4000)),
            "rebuild audit: 800/800 events (100.0%), swapping the new rows in"
        );
        assert_eq!(
            plain_line("audit", &at(Stage::Done, 800, 800, 61_000)),
            "rebuild audit: 800/800 events (100.0%), swapped in after 1m01s"
        );
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration(Duration::ZERO), "0s");
        assert_eq!(duration(Duration::from_millis(1)), "1s");
        assert_eq!(duration(Duration::from_secs(59)), "59s");
        assert_eq!(duration(Duration::from_secs(185)), "3m05s");
        assert_eq!(
            duration(Duration::from_secs(2 * 3600 + 7 * 60 + 9)),
            "2h07m"
        );
        assert_eq!(elapsed(Duration::from_millis(2345)), "2.3s");
        assert_eq!(elapsed(Duration::from_millis(99)), "0.0s");
        assert_eq!(elapsed(Duration::from_secs(3600)), "1h00m");
    }

    #[test]
    fn plain_lines_come_every_few_seconds_and_at_each_stage() {
        let start = Instant::now();
        let mut display = Display::new("audit", false, Vec::new());
        let s = |secs: u64| start + Duration::from_secs(secs);
        display.show(&at(Stage::Building, 0, 100, 0), s(0));
        display.show(&at(Stage::Building, 10, 100, 1000), s(1)); // too soon
        display.show(&at(Stage::Building, 50, 100, 5000), s(5));
        display.show(&at(Stage::Building, 60, 100, 6000), s(6)); // too soon
        display.show(&at(Stage::Building, 100, 100, 7000), s(7)); // too soon
        display.show(&at(Stage::Swapping, 100, 100, 7000), s(7));
        display.show(&at(Stage::Done, 100, 100, 7500), s(7));
        let text = String::from_utf8(display.into_inner()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "rebuild audit: 0/100 events (0.0%), starting",
                "rebuild audit: 50/100 events (50.0%), 10 events/s, about 5s left",
                "rebuild audit: 100/100 events (100.0%), swapping the new rows in",
                "rebuild audit: 100/100 events (100.0%), swapped in after 7.5s",
            ]
        );
        assert!(!text.contains('\r'), "no redrawing in a plain display");
    }

    #[test]
    fn a_terminal_line_is_redrawn_in_place_and_ended_once() {
        let start = Instant::now();
        let mut display = Display::new("audit", true, Vec::new());
        let ms = |ms: u64| start + Duration::from_millis(ms);
        display.show(&at(Stage::Building, 0, 100, 0), ms(0));
        display.show(&at(Stage::Building, 10, 100, 50), ms(50)); // too soon
        display.show(&at(Stage::Building, 20, 100, 150), ms(150));
        display.show(&at(Stage::Done, 100, 100, 300), ms(300));
        display.interrupt(); // nothing left open
        let text = String::from_utf8(display.into_inner()).unwrap();
        assert_eq!(text.matches("\r\x1b[2K").count(), 3, "{text:?}");
        assert_eq!(text.matches('\n').count(), 1, "{text:?}");
        assert!(text.ends_with("done in 0.3s\n"), "{text:?}");
        assert!(text.contains("20/100 events"), "{text:?}");
        assert!(!text.contains("10/100 events"), "{text:?}");

        // A rebuild that fails half-way leaves no half line behind.
        let mut display = Display::new("audit", true, Vec::new());
        display.show(&at(Stage::Building, 0, 100, 0), start);
        display.interrupt();
        let text = String::from_utf8(display.into_inner()).unwrap();
        assert!(text.ends_with('\n'), "{text:?}");
    }
}
