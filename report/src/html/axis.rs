//! Chart geometry shared by every SVG on the page: the plot frame ([`Plot`]) and its axes
//! ([`Axis`], drawn by `x_axis.html` and `line_chart.html`), linear and logarithmic scales, tick
//! positions with readable labels, and the legend row. Coordinates are in the
//! SVG's own units (a 1000-wide viewBox, scaled by the browser), rounded to a tenth.

/// Width of every chart's viewBox; the browser scales it to the page.
pub const WIDTH: f64 = 1000.0;
/// Left margin: room for y tick labels and the rotated y-axis title.
pub const LEFT: f64 = 110.0;
/// Right margin.
pub const RIGHT: f64 = 30.0;
/// Top margin: room for the legend row.
pub const TOP: f64 = 60.0;
/// Bottom margin: x tick labels and the x-axis title.
pub const BOTTOM: f64 = 70.0;

/// The x-axis title of every chart drawn over a phase's seconds.
pub const PHASE_SECONDS: &str = "seconds since the transport's phase started (s)";

/// Where a chart's plot area sits inside its viewBox (1000 wide, `height` tall).
pub struct Plot {
    /// viewBox height.
    pub height: f64,
    /// Plot left edge.
    pub x0: f64,
    /// Plot right edge.
    pub x1: f64,
    /// Plot top.
    pub y0: f64,
    /// Plot bottom.
    pub y1: f64,
}

impl Plot {
    /// The usual frame: full width between the margins, from below the legend (or [`TOP`])
    /// down to [`BOTTOM`] above the viewBox's end.
    pub fn below_legend(height: f64, legend_bottom: f64) -> Self {
        Self {
            height,
            x0: LEFT,
            x1: WIDTH - RIGHT,
            y0: legend_bottom.max(TOP),
            y1: height - BOTTOM,
        }
    }

    /// Horizontal centre, where the x-axis title goes.
    pub fn x_mid(&self) -> f64 {
        px((self.x0 + self.x1) / 2.0)
    }

    /// Vertical centre, where the y-axis title goes.
    pub fn y_mid(&self) -> f64 {
        px((self.y0 + self.y1) / 2.0)
    }
}

/// One axis: its ticks and its title (with the unit, e.g. `requests per second`).
pub struct Axis {
    /// Ticks along the axis.
    pub ticks: Vec<Tick>,
    /// Title with unit.
    pub title: String,
}

impl Axis {
    /// Ticks for `scale`, labelled by `label`, under `title`.
    pub fn new(scale: &Scale, label: impl Fn(f64) -> String, title: impl Into<String>) -> Self {
        Self {
            ticks: ticks(scale, label),
            title: title.into(),
        }
    }
}

/// Rounds a coordinate to a tenth of a unit, so the SVG stays small and readable.
pub fn px(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// Maps data values to SVG coordinates along one axis.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    lo: f64,
    hi: f64,
    from: f64,
    to: f64,
    log: bool,
}

impl Scale {
    /// A linear scale from `lo..hi` onto `from..to`.
    pub fn linear(lo: f64, hi: f64, from: f64, to: f64) -> Self {
        let hi = if hi > lo { hi } else { lo + 1.0 };
        Self {
            lo,
            hi,
            from,
            to,
            log: false,
        }
    }

    /// A base-10 logarithmic scale; `lo` must be positive.
    pub fn log(lo: f64, hi: f64, from: f64, to: f64) -> Self {
        let hi = if hi > lo { hi } else { lo * 10.0 };
        Self {
            lo,
            hi,
            from,
            to,
            log: true,
        }
    }

    /// Where `v` lands, clamped into the axis so a zero on a log axis sits at its start.
    pub fn map(&self, v: f64) -> f64 {
        let t = if self.log {
            (v.max(self.lo).log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        };
        px(self.from + t.clamp(0.0, 1.0) * (self.to - self.from))
    }

    /// Tick values: every power of ten on a log scale, a "nice" step on a linear one.
    pub fn ticks(&self) -> Vec<f64> {
        if self.log {
            let mut out = Vec::new();
            let mut v = 10f64.powf(self.lo.log10().ceil());
            while v <= self.hi * 1.0001 {
                out.push(v);
                v *= 10.0;
            }
            out
        } else {
            let step = nice_step(self.hi - self.lo);
            let mut out = Vec::new();
            let mut v = (self.lo / step).ceil() * step;
            while v <= self.hi + step * 1e-6 {
                out.push(v);
                v += step;
            }
            out
        }
    }
}

/// A round step that divides `range` into about five parts: 1, 2 or 5 times a power of ten.
pub fn nice_step(range: f64) -> f64 {
    let raw = (range / 5.0).max(1e-9);
    let magnitude = 10f64.powf(raw.log10().floor());
    let norm = raw / magnitude;
    let nice = if norm < 1.5 {
        1.0
    } else if norm < 3.0 {
        2.0
    } else if norm < 7.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

/// The top of a linear axis starting at zero that shows `max` with a little headroom.
pub fn nice_max(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let step = nice_step(max);
    ((max * 1.05) / step).ceil() * step
}

/// The decade below `v` (for a log axis start), at least `floor`.
pub fn decade_below(v: f64, floor: f64) -> f64 {
    10f64.powf(v.max(floor).log10().floor())
}

/// The decade above `v` (for a log axis end).
pub fn decade_above(v: f64) -> f64 {
    10f64.powf(v.max(1e-9).log10().ceil())
}

/// A tick label: `0.1`, `5`, `250`, `2k`, `1.5M`.
pub fn tick_label(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        trim(format!("{:.1}", v / 1e6)) + "M"
    } else if a >= 1e4 {
        trim(format!("{:.0}", v / 1e3)) + "k"
    } else if a >= 1e3 {
        trim(format!("{:.1}", v / 1e3)) + "k"
    } else if a >= 1.0 || a == 0.0 {
        trim(format!("{v:.1}"))
    } else {
        trim(format!("{v:.3}"))
    }
}

/// A latency tick label on a log axis: `0.1 ms`, `10 ms`, `1 s`.
pub fn ms_tick_label(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{} s", tick_label(ms / 1000.0))
    } else {
        format!("{} ms", tick_label(ms))
    }
}

fn trim(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// One tick: where, and what it says.
pub struct Tick {
    /// Coordinate along its axis.
    pub pos: f64,
    /// Label text.
    pub label: String,
}

/// Ticks for `scale` labelled by `label` (see [`Axis::new`]).
fn ticks(scale: &Scale, label: impl Fn(f64) -> String) -> Vec<Tick> {
    scale
        .ticks()
        .into_iter()
        .map(|v| Tick {
            pos: scale.map(v),
            label: label(v),
        })
        .collect()
}

/// How a legend item is drawn.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// A solid line.
    Line,
    /// A dashed line (a model).
    Dashed,
    /// A filled box.
    Box,
    /// A box filled with the hatch pattern.
    Hatched,
    /// A hollow dot.
    Dot,
    /// An arrow.
    Arrow,
    /// A row of small boxes, one per colour in the item's comma-separated `colour` (a mark
    /// drawn in "its transport's colour", whichever transport that is).
    Palette,
}

/// One legend entry, placed.
pub struct LegendItem {
    /// Left edge.
    pub x: f64,
    /// Baseline.
    pub y: f64,
    /// Colour of the mark.
    pub colour: String,
    /// What it stands for.
    pub label: String,
    /// How to draw the mark.
    pub mark: Mark,
}

impl LegendItem {
    /// The mark is a solid line.
    pub fn is_line(&self) -> bool {
        self.mark == Mark::Line
    }
    /// The mark is a dashed line.
    pub fn is_dashed(&self) -> bool {
        self.mark == Mark::Dashed
    }
    /// The mark is a filled box.
    pub fn is_box(&self) -> bool {
        self.mark == Mark::Box
    }
    /// The mark is a hatched box.
    pub fn is_hatched(&self) -> bool {
        self.mark == Mark::Hatched
    }
    /// The mark is a dot.
    pub fn is_dot(&self) -> bool {
        self.mark == Mark::Dot
    }
    /// The mark is an arrow.
    pub fn is_arrow(&self) -> bool {
        self.mark == Mark::Arrow
    }
    /// For a palette mark, each colour's box: (x, width, colour), together as wide as a box.
    pub fn palette(&self) -> Vec<(f64, f64, &str)> {
        if self.mark != Mark::Palette {
            return Vec::new();
        }
        let colours: Vec<&str> = self.colour.split(',').collect();
        let w = 36.0 / colours.len().max(1) as f64;
        colours
            .into_iter()
            .enumerate()
            .map(|(i, c)| (px(self.x + i as f64 * w), px(w), c))
            .collect()
    }
}

/// Lays legend entries out left to right from `x`, wrapping into a new row past the chart's
/// width; returns the items and the y just below the last row.
pub fn legend_rows(entries: Vec<(String, String, Mark)>, x: f64, y: f64) -> (Vec<LegendItem>, f64) {
    let mut items = Vec::new();
    let (mut cx, mut cy) = (x, y);
    for (colour, label, mark) in entries {
        // About 9.5 units per character at the legend's 17-unit font, plus the mark.
        let width = 46.0 + label.chars().count() as f64 * 9.5 + 24.0;
        if cx + width > WIDTH - RIGHT && cx > x {
            cx = x;
            cy += 28.0;
        }
        items.push(LegendItem {
            x: px(cx),
            y: px(cy),
            colour,
            label,
            mark,
        });
        cx += width;
    }
    (items, cy + 28.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_ticks_are_round() {
        let s = Scale::linear(0.0, nice_max(612.0), 0.0, 100.0);
        let t = s.ticks();
        assert_eq!(t.first(), Some(&0.0));
        assert!(
            t.windows(2).all(|w| (w[1] - w[0] - 100.0).abs() < 1e-9),
            "{t:?}"
        );
    }

    #[test]
    fn log_scale_puts_decades_evenly() {
        let s = Scale::log(0.1, 1000.0, 0.0, 400.0);
        assert_eq!(s.ticks().len(), 5);
        assert_eq!(s.map(1.0), 100.0);
        assert_eq!(s.map(0.0), 0.0);
        assert_eq!(ms_tick_label(1000.0), "1 s");
        assert_eq!(ms_tick_label(0.1), "0.1 ms");
        assert_eq!(tick_label(1500.0), "1.5k");
    }
}
